package events

import (
	"context"
	"time"
)

// StreamRecord is a stream as stored: the receiver's Authorization header only sealed.
type StreamRecord struct {
	ID              string
	Owner           string // the creating credential's ID; "" for streams from before owners
	Delivery        string // deliveryPush or deliveryPoll
	EndpointURL     string
	Audience        string
	EventsRequested []string
	Description     string
	AuthSealed      []byte
	Status          string // "" is enabled
	StatusReason    string
	Listed          bool   // the stream carries only the devices added (see subjects.go)
	Subjects        int    // how many subject marks the stream has
	Rev             uint64 // moves on every change; restarts delivery
	CreatedAt       time.Time
	// VerifiedAt is when the last verification was asked for: the minimum interval between
	// two holds across every server of a database.
	VerifiedAt time.Time
	// LastDeliveredAt, LastError and LastErrorAt are what the stream's deliveries did last,
	// kept here so that every server shows the stream's owner the same (push delivery runs on
	// one server, polls reach any).
	LastDeliveredAt time.Time
	LastError       string
	LastErrorAt     time.Time
}

// SubjectMark is what a stream's subject list says of one device.
type SubjectMark int

// Subject marks (see subjects.go for what they mean).
const (
	SubjectAbsent   SubjectMark = iota // no mark
	SubjectListed                      // on a listed stream: the device is delivered
	SubjectExcluded                    // on an all-devices stream: the device is not
	SubjectUnknown                     // a mark this version does not know: neither of the above
)

// QueuedSET is one SET waiting in a stream's outbox.
type QueuedSET struct {
	// Seq orders a stream's SETs: they are delivered in Seq order, which is emission order.
	Seq uint64
	JTI string
	SET string
}

// Repository keeps the event streams, their subject lists and their outboxes. It only stores:
// who may see a stream, which events it takes and when SETs leave the outbox is the
// Transmitter's business.
type Repository interface {
	// Streams returns every stream, ordered by ID.
	Streams(ctx context.Context) ([]StreamRecord, error)
	// Stream returns one stream, or an error wrapping ErrNotFound.
	Stream(ctx context.Context, id string) (*StreamRecord, error)
	// PutStream stores rec under rec.ID, replacing what was there.
	PutStream(ctx context.Context, rec *StreamRecord) error
	// DeleteStream removes the stream record (not its subjects or outbox).
	DeleteStream(ctx context.Context, id string) error

	// Subject returns the mark of deviceID on a stream's subject list.
	Subject(ctx context.Context, streamID, deviceID string) (SubjectMark, error)
	// PutSubject marks deviceID on a stream's subject list (SubjectListed or SubjectExcluded).
	PutSubject(ctx context.Context, streamID, deviceID string, mark SubjectMark) error
	// DeleteSubject removes deviceID's mark from a stream's subject list.
	DeleteSubject(ctx context.Context, streamID, deviceID string) error
	// ClearSubjects removes every mark of a stream.
	ClearSubjects(ctx context.Context, streamID string) error

	// Enqueue appends a SET to the end of a stream's outbox.
	Enqueue(ctx context.Context, streamID, jti, set string) error
	// Queued returns up to limit of the stream's oldest SETs (every one for limit <= 0).
	Queued(ctx context.Context, streamID string, limit int) ([]QueuedSET, error)
	// Dequeue removes one SET from a stream's outbox; a missing one is no error.
	Dequeue(ctx context.Context, streamID string, seq uint64) error
	// ClearOutbox removes every SET of a stream.
	ClearOutbox(ctx context.Context, streamID string) error
	// QueueLen returns how many SETs wait in a stream's outbox.
	QueueLen(ctx context.Context, streamID string) (int, error)
	// QueueLens returns how many SETs wait per stream, for every stream with any.
	QueueLens(ctx context.Context) (map[string]int, error)
}

// Tx is what the Transmitter uses of one unit of work.
type Tx interface {
	Events() Repository
}

// Store runs the Transmitter's units of work (storage.Scope of the server's store satisfies
// it).
type Store interface {
	// View runs fn on one consistent snapshot; fn must not write.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}
