package boltstore

import (
	"context"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/kv"
)

// MDMBucketPrefix prefixes the names of the bbolt buckets that hold
// nanomdm's data, keeping them apart from other Hale packages' buckets.
const MDMBucketPrefix = "nanomdm_"

// MDMStorage is nanomdm's storage (enrollments, command queues, push
// certificates, ...) in the Store's bbolt file. Everything but the command
// queue is nanomdm's storage/kv on Bucket; the queue is native bbolt (see
// commandQueue for why).
type MDMStorage struct {
	*kv.KV
	queue *commandQueue
}

var _ storage.AllStorage = (*MDMStorage)(nil)

// NewMDMStorage opens (creating if missing) one bbolt bucket per nanomdm
// kv bucket: nanomdm_users, nanomdm_cert_auth, nanomdm_queue,
// nanomdm_push_cert, nanomdm_devices and nanomdm_enrollments.
func NewMDMStorage(s *Store, opts ...MDMOption) (*MDMStorage, error) {
	var cfg mdmConfig
	for _, o := range opts {
		o(&cfg)
	}
	names := []string{"users", "cert_auth", "queue", "push_cert", "devices", "enrollments"}
	b := make([]*Bucket, len(names))
	for i, name := range names {
		var err error
		if b[i], err = s.Bucket(MDMBucketPrefix + name); err != nil {
			return nil, err
		}
	}
	if err := s.createBuckets(queueBuckets...); err != nil {
		return nil, err
	}
	enrollments := b[5]
	q := &commandQueue{db: s.db, sealer: cfg.sealer, lastSeen: func(ctx context.Context, id string, at time.Time) error {
		// nanomdm's kv storage keeps last-seen here ("<id>.last_seen_at", Unix microseconds).
		return enrollments.Set(ctx, id+".last_seen_at", microTime(at))
	}}
	return &MDMStorage{KV: kv.New(b[0], b[1], b[2], b[3], b[4], b[5]), queue: q}, nil
}

// Sealer encrypts and authenticates data at rest under a purpose that binds it to its place
// (internal/seal's Key is one).
type Sealer interface {
	Seal(purpose string, plaintext []byte) []byte
	Open(purpose string, sealed []byte) ([]byte, error)
}

type mdmConfig struct{ sealer Sealer }

// MDMOption configures [NewMDMStorage].
type MDMOption func(*mdmConfig)

// WithCommandSealer seals queued command bodies at rest. Commands carry secrets: the PIN of a
// Mac's DeviceLock or EraseDevice, an unlock token. Each body is bound to its command UUID, so
// one cannot be moved onto another command.
func WithCommandSealer(s Sealer) MDMOption { return func(c *mdmConfig) { c.sealer = s } }

// EnqueueCommand queues cmd for every enrollment in ids in one bbolt transaction.
func (m *MDMStorage) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	return m.queue.EnqueueCommand(ctx, ids, cmd)
}

// StoreCommandReport records a device's answer to a queued command.
func (m *MDMStorage) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	return m.queue.StoreCommandReport(r, report)
}

// RetrieveNextCommand returns the enrollment's next queued command, or nil.
func (m *MDMStorage) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	return m.queue.RetrieveNextCommand(r, skipNotNow)
}

// RemoveCommand takes one command out of the enrollment's queue.
func (m *MDMStorage) RemoveCommand(ctx context.Context, enrollmentID, uuid string) error {
	return m.queue.RemoveCommand(ctx, enrollmentID, uuid)
}

// ClearQueue removes every queued command of the enrollment.
func (m *MDMStorage) ClearQueue(r *mdm.Request) error {
	return m.queue.ClearQueue(r)
}
