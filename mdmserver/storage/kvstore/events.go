package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/halemdm/hale/mdmserver/events"
)

var (
	// BucketEventStreams holds stream ID → streamRecord JSON.
	BucketEventStreams = []byte("ssf_streams")
	// BucketEventOutbox holds events.OutboxKey: stream ID 0x00 seq (16 bytes, big endian) → outboxRecord JSON, so a
	// stream's SETs are contiguous and in the order they were emitted. seq is the bucket's
	// sequence, shared by every stream.
	BucketEventOutbox = []byte("ssf_outbox")
	// BucketEventSubjects holds stream ID 0x00 device ID → one mark byte (subjectMarks).
	BucketEventSubjects = []byte("ssf_subjects")
)

// eventBuckets are the buckets of the event streams.
var eventBuckets = [][]byte{BucketEventStreams, BucketEventOutbox, BucketEventSubjects}

// streamRecord is an event stream as stored (the stream records of earlier releases lack the
// newer members, which then decode as their zero values).
type streamRecord struct {
	ID              string    `json:"id"`
	Owner           string    `json:"owner,omitempty"`
	Delivery        string    `json:"delivery"`
	EndpointURL     string    `json:"endpoint_url,omitempty"`
	Audience        string    `json:"audience"`
	EventsRequested []string  `json:"events_requested"`
	Description     string    `json:"description,omitempty"`
	AuthSealed      []byte    `json:"auth_sealed,omitempty"`
	Status          string    `json:"status,omitempty"`
	StatusReason    string    `json:"status_reason,omitempty"`
	Listed          bool      `json:"subjects_listed,omitempty"`
	Subjects        int       `json:"subjects,omitempty"`
	Rev             uint64    `json:"rev,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	VerifiedAt      time.Time `json:"verified_at,omitzero"`
	LastDeliveredAt time.Time `json:"last_delivered_at,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
}

// outboxRecord is one SET waiting in the outbox.
type outboxRecord struct {
	JTI string `json:"jti"`
	SET string `json:"set"`
}

// subjectMarks are the stored bytes of the subject marks.
var subjectMarks = map[events.SubjectMark]byte{events.SubjectListed: '+', events.SubjectExcluded: '-'}

// Events returns the event streams of this transaction.
func (t *tx) Events() events.Repository { return eventsRepo{t} }

// eventsRepo is events.Repository on one key-value transaction.
type eventsRepo struct{ t *tx }

// streamPrefix is the key prefix of a stream's outbox entries and subject marks.
func streamPrefix(streamID string) []byte { return []byte(streamID + "\x00") }

// outboxKey is events.OutboxKey: streamID 0x00 followed by seq as 16 bytes big endian.
func outboxKey(streamID string, seq uint64) []byte { return events.OutboxKey(streamID, seq) }

func decodeStream(k, v []byte) (events.StreamRecord, error) {
	var r streamRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return events.StreamRecord{}, fmt.Errorf("events: corrupt stream %q: %w", k, err)
	}
	return events.StreamRecord(r), nil
}

// Streams returns every stream in ID order.
func (r eventsRepo) Streams(ctx context.Context) ([]events.StreamRecord, error) {
	b, err := bucket(r.t.tx, BucketEventStreams)
	if err != nil {
		return nil, err
	}
	var out []events.StreamRecord
	err = b.ForEach(func(k, v []byte) error {
		rec, err := decodeStream(k, v)
		out = append(out, rec)
		return err
	})
	return out, err
}

// Stream returns one stream.
func (r eventsRepo) Stream(ctx context.Context, id string) (*events.StreamRecord, error) {
	b, err := bucket(r.t.tx, BucketEventStreams)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, events.ErrNotFound
	}
	rec, err := decodeStream([]byte(id), v)
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// PutStream stores rec.
func (r eventsRepo) PutStream(ctx context.Context, rec *events.StreamRecord) error {
	if rec.ID == "" {
		return fmt.Errorf("kvstore: event stream without an ID")
	}
	v, err := json.Marshal(streamRecord(*rec))
	if err != nil {
		return fmt.Errorf("events: encode stream: %w", err)
	}
	b, err := bucket(r.t.tx, BucketEventStreams)
	if err != nil {
		return err
	}
	return b.Put([]byte(rec.ID), v)
}

// DeleteStream removes the stream record.
func (r eventsRepo) DeleteStream(ctx context.Context, id string) error {
	b, err := bucket(r.t.tx, BucketEventStreams)
	if err != nil {
		return err
	}
	return b.Delete([]byte(id))
}

// Subject returns a device's mark on a stream.
func (r eventsRepo) Subject(ctx context.Context, streamID, deviceID string) (events.SubjectMark, error) {
	b, err := bucket(r.t.tx, BucketEventSubjects)
	if err != nil {
		return events.SubjectAbsent, err
	}
	v := b.Get([]byte(streamID + "\x00" + deviceID))
	switch {
	case v == nil:
		return events.SubjectAbsent, nil
	case len(v) == 1 && v[0] == subjectMarks[events.SubjectListed]:
		return events.SubjectListed, nil
	case len(v) == 1 && v[0] == subjectMarks[events.SubjectExcluded]:
		return events.SubjectExcluded, nil
	}
	return events.SubjectUnknown, nil
}

// PutSubject marks a device on a stream.
func (r eventsRepo) PutSubject(ctx context.Context, streamID, deviceID string, mark events.SubjectMark) error {
	m, ok := subjectMarks[mark]
	if !ok {
		return fmt.Errorf("kvstore: subject mark %d cannot be stored", mark)
	}
	b, err := bucket(r.t.tx, BucketEventSubjects)
	if err != nil {
		return err
	}
	return b.Put([]byte(streamID+"\x00"+deviceID), []byte{m})
}

// DeleteSubject removes a device's mark from a stream.
func (r eventsRepo) DeleteSubject(ctx context.Context, streamID, deviceID string) error {
	b, err := bucket(r.t.tx, BucketEventSubjects)
	if err != nil {
		return err
	}
	return b.Delete([]byte(streamID + "\x00" + deviceID))
}

// ClearSubjects removes every mark of a stream.
func (r eventsRepo) ClearSubjects(ctx context.Context, streamID string) error {
	b, err := bucket(r.t.tx, BucketEventSubjects)
	if err != nil {
		return err
	}
	return deletePrefix(b, streamPrefix(streamID))
}

// Enqueue appends a SET to a stream's outbox.
func (r eventsRepo) Enqueue(ctx context.Context, streamID, jti, set string) error {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	v, err := json.Marshal(outboxRecord{JTI: jti, SET: set})
	if err != nil {
		return err
	}
	return b.Put(outboxKey(streamID, seq), v)
}

// Queued returns up to limit of a stream's oldest SETs.
func (r eventsRepo) Queued(ctx context.Context, streamID string, limit int) ([]events.QueuedSET, error) {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return nil, err
	}
	var out []events.QueuedSET
	prefix := streamPrefix(streamID)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && (limit <= 0 || len(out) < limit); k, v = c.Next() {
		var e outboxRecord
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("events: corrupt outbox entry %x: %w", k, err)
		}
		out = append(out, events.QueuedSET{Seq: binary.BigEndian.Uint64(k[len(k)-8:]), JTI: e.JTI, SET: e.SET})
	}
	return out, nil
}

// Dequeue removes one SET from a stream's outbox.
func (r eventsRepo) Dequeue(ctx context.Context, streamID string, seq uint64) error {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return err
	}
	return b.Delete(outboxKey(streamID, seq))
}

// ClearOutbox removes every SET of a stream.
func (r eventsRepo) ClearOutbox(ctx context.Context, streamID string) error {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return err
	}
	return deletePrefix(b, streamPrefix(streamID))
}

// QueueLen counts a stream's SETs.
func (r eventsRepo) QueueLen(ctx context.Context, streamID string) (int, error) {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return 0, err
	}
	n := 0
	prefix := streamPrefix(streamID)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n, nil
}

// QueueLens counts the SETs of every stream that has any.
func (r eventsRepo) QueueLens(ctx context.Context) (map[string]int, error) {
	b, err := bucket(r.t.tx, BucketEventOutbox)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	err = b.ForEach(func(k, _ []byte) error {
		if i := bytes.IndexByte(k, 0); i > 0 {
			out[string(k[:i])]++
		}
		return nil
	})
	return out, err
}

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b Bucket, prefix []byte) error {
	// Collect first: deleting under a cursor skips keys.
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
