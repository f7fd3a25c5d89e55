// Package pgmdm keeps nanomdm's Apple MDM state (enrollments, command queues, push
// certificates, certificate associations) in PostgreSQL through nanomdm's own storage/pgsql
// and its schema.sql, so nanomdm's own conformance suite (test/e2e) holds for it as it does
// for the bbolt store.
//
// Hale adds two things on top of nanomdm's storage:
//
//   - [WithCommandSealer] seals each queued command body at rest, bound to its command UUID,
//     as the bbolt queue does: commands carry secrets (a Mac's DeviceLock or EraseDevice PIN,
//     an unlock token) that a database dump or a replica's backup must not reveal.
//   - [Storage.RemoveCommand] takes one command out of one enrollment's queue, which Hale's
//     command expiry needs (commands.QueueRemover) and nanomdm's storage does not offer.
//
// The schema is not applied here: the caller (Hale's PostgreSQL store) applies nanomdm's
// schema.sql ([pgsql.Schema]) as one of its versioned migrations.
package pgmdm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/micromdm/nanolib/log"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/pgsql"
)

// Storage is nanomdm's PostgreSQL storage with Hale's sealing of queued command bodies and
// single-command removal. Every method of nanomdm's storage.AllStorage not overridden here is
// nanomdm's own.
type Storage struct {
	// Embedded under an unexported name, so no caller can reach nanomdm's own EnqueueCommand
	// or RetrieveNextCommand past the sealing.
	*nanoStorage
	db     *sql.DB
	sealer Sealer
}

// nanoStorage names nanomdm's storage for embedding in Storage.
type nanoStorage = pgsql.PgSQLStorage

var (
	_ storage.AllStorage = (*Storage)(nil)
	// Hale's command expiry type-asserts this on the MDM storage (commands.QueueRemover).
	_ interface {
		RemoveCommand(ctx context.Context, enrollmentID, uuid string) error
	} = (*Storage)(nil)
)

// Sealer encrypts and authenticates data at rest under a purpose that binds it to its place
// (internal/seal's Key is one). It has the shape of boltstore's, so one master key serves both.
type Sealer interface {
	Seal(purpose string, plaintext []byte) []byte
	Open(purpose string, sealed []byte) ([]byte, error)
}

type config struct {
	sealer     Sealer
	logger     log.Logger
	keepResult bool
}

// Option configures [New].
type Option func(*config)

// WithCommandSealer seals queued command bodies at rest. Each body is bound to its command UUID
// (purpose "mdm-command/<uuid>", as in boltstore), so a body cannot be moved onto another
// command, and a body that does not open is an error: it is never sent to the device.
func WithCommandSealer(s Sealer) Option { return func(c *config) { c.sealer = s } }

// WithLogger sets the logger nanomdm's storage logs through.
func WithLogger(l log.Logger) Option { return func(c *config) { c.logger = l } }

// WithKeptResults keeps every command and the device's last answer to it in nanomdm's tables
// after the device answered, as nanomdm does by default. Without it (Hale's default) a command
// is deleted once every enrollment it was queued for has answered (a NotNow keeps it): Hale
// records commands and results in its own store, and a delivered PIN need not stay anywhere.
func WithKeptResults() Option { return func(c *config) { c.keepResult = true } }

// New returns nanomdm's PostgreSQL storage on db, a handle the caller owns (and closes), on a
// database where nanomdm's schema.sql has been applied. It pings db, so an unreachable
// database fails here rather than at the first check-in.
func New(db *sql.DB, opts ...Option) (*Storage, error) {
	if db == nil {
		return nil, errors.New("pgmdm: a database handle is required")
	}
	cfg := config{logger: log.NopLogger}
	for _, o := range opts {
		o(&cfg)
	}
	pgOpts := []pgsql.Option{pgsql.WithDB(db), pgsql.WithLogger(cfg.logger)}
	if !cfg.keepResult {
		pgOpts = append(pgOpts, pgsql.WithDeleteCommands())
	}
	pg, err := pgsql.New(pgOpts...)
	if err != nil {
		return nil, fmt.Errorf("pgmdm: %w", err)
	}
	return &Storage{nanoStorage: pg, db: db, sealer: cfg.sealer}, nil
}

// EnqueueCommand queues cmd for every enrollment in ids in one transaction, its body sealed
// when the storage has a sealer. cmd itself is not modified.
func (s *Storage) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if err := checkCommand(cmd); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errors.New("pgmdm: enqueue: no enrollment to queue the command for")
	}
	for _, id := range ids {
		if id == "" || len(id) > maxIDLen {
			return nil, fmt.Errorf("pgmdm: enqueue: invalid enrollment id %q", id)
		}
	}
	stored := *cmd
	stored.Raw = s.sealBody(cmd.CommandUUID, cmd.Raw)
	return s.nanoStorage.EnqueueCommand(ctx, ids, &stored)
}

// RetrieveNextCommand returns the enrollment's next queued command with its body opened, or
// nil when none is queued. A body that does not open (tampered with, sealed for another
// command or under another key, or in clear while sealing is on) is an error naming the
// command, so the device is never sent it.
func (s *Storage) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	cmd, err := s.nanoStorage.RetrieveNextCommand(r, skipNotNow)
	if err != nil || cmd == nil {
		return cmd, err
	}
	plain, err := s.openBody(cmd.CommandUUID, cmd.Raw)
	if err != nil {
		return nil, err
	}
	cmd.Raw = plain
	return cmd, nil
}

// RemoveCommand takes one command out of one enrollment's queue (an expired command), with the
// enrollment's answer to it, and deletes the command once no enrollment has it queued or
// answered. Removing a command that is not queued is not an error.
func (s *Storage) RemoveCommand(ctx context.Context, enrollmentID, uuid string) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgmdm: remove command: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the error that made us roll back is the one worth returning
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM enrollment_queue WHERE id = $1 AND command_uuid = $2`, enrollmentID, uuid); err != nil {
		return fmt.Errorf("pgmdm: remove command %s: %w", uuid, err)
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM command_results WHERE id = $1 AND command_uuid = $2`, enrollmentID, uuid); err != nil {
		return fmt.Errorf("pgmdm: remove command %s: %w", uuid, err)
	}
	_, err = tx.ExecContext(ctx, `
DELETE FROM commands AS c
WHERE c.command_uuid = $1
  AND NOT EXISTS (SELECT 1 FROM enrollment_queue AS q WHERE q.command_uuid = c.command_uuid)
  AND NOT EXISTS (SELECT 1 FROM command_results AS r WHERE r.command_uuid = c.command_uuid)`, uuid)
	if err != nil {
		return fmt.Errorf("pgmdm: remove command %s: %w", uuid, err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("pgmdm: remove command %s: %w", uuid, err)
	}
	return nil
}
