package agentcmd

import "context"

// Repository keeps agent commands by device ID and command ID. It only stores, reads and
// counts: what enqueueing, delivery and a result do to a command are this package's functions
// over it, so every backend keeps the same rules.
//
// A Repository belongs to one transaction of its backend: what it writes commits with
// everything else written in that transaction, or not at all. Commands it returns are the
// caller's own copies.
type Repository interface {
	// Command returns command id of device deviceID, or ErrNotFound.
	Command(ctx context.Context, deviceID, id string) (*Command, error)
	// PutCommand stores c under its DeviceID and ID, replacing what was there.
	PutCommand(ctx context.Context, c *Command) error
	// Commands returns the commands of one device, in command ID order. Another device's
	// commands never match, even one whose ID starts with this one.
	Commands(ctx context.Context, deviceID string) ([]Command, error)
	// StateCounts returns how many commands are in each state; a stored command whose state
	// cannot be read counts under "". A state no command is in may be missing or zero. It is
	// what the metrics read at every scrape, so a backend answers it without reading every
	// command (bbolt keeps the counts in memory, moved by each committed write).
	StateCounts(ctx context.Context) (map[string]int64, error)
}

// Tx is what the queue needs of a unit of work: its repository.
type Tx interface {
	AgentCommands() Repository
}

// Store runs the queue's units of work (storage.Scope(st, func(tx storage.Tx) agentcmd.Tx {
// return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}
