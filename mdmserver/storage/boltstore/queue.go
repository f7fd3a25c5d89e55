package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"go.etcd.io/bbolt"
)

// commandQueue is nanomdm's command queue kept natively in bbolt, replacing the linked list that
// nanomdm's storage/kv builds from single-key operations. Two faults of that list made us replace
// it rather than wrap it:
//
//   - EnqueueCommand writes the queue pointers through the parent bucket at once but the command
//     body inside a transaction committed later, so a device polling in between is handed a
//     command UUID whose body does not exist yet (the check-in fails with a 500).
//   - After NotNow answers, acknowledging the last queued command leaves its predecessor's "next"
//     pointer behind; the command is handed out again and acknowledging it twice drops the
//     NotNow commands before it. A lost command can be a lost wipe.
//
// Here every operation is one bbolt transaction: a queue entry and its body commit together, and
// the order is a per-enrollment sequence key, so there is no pointer to leave behind.
//
// Layout (all under Hale's bbolt file):
//
//	mdmq_commands  <uuid>                       → <request type> 0x00 <raw command plist>
//	mdmq_queue     <enrollment id> 0x00 <seq>   → <uuid>     (seq: 8-byte big-endian, insertion order)
//	mdmq_status    <enrollment id> 0x00 <uuid>  → <last status reported, e.g. NotNow>
type commandQueue struct {
	db *bbolt.DB
	// sealer, when set, seals command bodies at rest (purpose "mdm-command/<uuid>").
	sealer Sealer
	// lastSeen records the enrollment's last-seen time where nanomdm's kv storage keeps it.
	lastSeen func(ctx context.Context, id string, at time.Time) error
}

var (
	bucketQueueCommands = []byte("mdmq_commands")
	bucketQueueEntries  = []byte("mdmq_queue")
	bucketQueueStatus   = []byte("mdmq_status")
)

// queueBuckets lists the buckets the queue needs, for Store.createBuckets.
var queueBuckets = []string{string(bucketQueueCommands), string(bucketQueueEntries), string(bucketQueueStatus)}

func queuePrefix(id string) []byte { return append([]byte(id), 0) }

func statusKey(id, uuid string) []byte { return append(queuePrefix(id), uuid...) }

// EnqueueCommand queues cmd for every enrollment in ids, atomically.
func (q *commandQueue) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if cmd == nil || cmd.CommandUUID == "" || cmd.Command.RequestType == "" || len(cmd.Raw) == 0 {
		return nil, errors.New("store: enqueue: command needs a UUID, a request type and a body")
	}
	if len(cmd.Raw) > MaxValueSize {
		return nil, fmt.Errorf("store: enqueue: command body is %d bytes, the limit is %d", len(cmd.Raw), MaxValueSize)
	}
	for _, id := range ids {
		if id == "" || bytes.IndexByte([]byte(id), 0) >= 0 {
			return nil, fmt.Errorf("store: enqueue: invalid enrollment id %q", id)
		}
	}
	// Batch: a policy change queues commands for many devices at once, and they share commits.
	// A failed batch is retried one function at a time in a fresh transaction, so the
	// duplicate check below sees only committed commands.
	err := q.db.Batch(func(tx *bbolt.Tx) error {
		cmds := tx.Bucket(bucketQueueCommands)
		if cmds.Get([]byte(cmd.CommandUUID)) != nil {
			return fmt.Errorf("command already exists: %s", cmd.CommandUUID)
		}
		body := append(append([]byte(cmd.Command.RequestType), 0), q.seal(cmd.CommandUUID, cmd.Raw)...)
		if err := cmds.Put([]byte(cmd.CommandUUID), body); err != nil {
			return err
		}
		entries := tx.Bucket(bucketQueueEntries)
		for _, id := range ids {
			seq, err := entries.NextSequence()
			if err != nil {
				return err
			}
			key := binary.BigEndian.AppendUint64(queuePrefix(id), seq)
			if err := entries.Put(key, []byte(cmd.CommandUUID)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]error{}, nil
}

// StoreCommandReport records a device's answer: NotNow keeps the command queued (and skippable),
// any other status removes it from the enrollment's queue.
func (q *commandQueue) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	if err := q.lastSeen(r.Context(), r.ID, time.Now()); err != nil {
		return fmt.Errorf("updating last seen: %w", err)
	}
	if report.Status == "Idle" {
		return nil
	}
	if report.CommandUUID == "" {
		return errors.New("empty command UUID")
	}
	// Batched: many devices report at once, and the update is idempotent.
	return q.db.Batch(func(tx *bbolt.Tx) error {
		status := tx.Bucket(bucketQueueStatus)
		key := statusKey(r.ID, report.CommandUUID)
		if report.Status == "NotNow" {
			return status.Put(key, []byte(report.Status))
		}
		if err := status.Delete(key); err != nil {
			return err
		}
		c := tx.Bucket(bucketQueueEntries).Cursor()
		prefix := queuePrefix(r.ID)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if string(v) == report.CommandUUID {
				return c.Delete()
			}
		}
		return nil
	})
}

// RetrieveNextCommand returns the oldest queued command of the enrollment, skipping commands
// last answered NotNow when skipNotNow is set (the device just said it cannot take them).
func (q *commandQueue) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	var cmd *mdm.Command
	err := q.db.View(func(tx *bbolt.Tx) error {
		status, cmds := tx.Bucket(bucketQueueStatus), tx.Bucket(bucketQueueCommands)
		c := tx.Bucket(bucketQueueEntries).Cursor()
		prefix := queuePrefix(r.ID)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if skipNotNow && string(status.Get(statusKey(r.ID, string(v)))) == "NotNow" {
				continue
			}
			body := cmds.Get(v)
			reqType, raw, ok := bytes.Cut(body, []byte{0})
			if !ok {
				return fmt.Errorf("store: queued command %s has no body (corrupt queue)", v)
			}
			plain, err := q.open(string(v), raw)
			if err != nil {
				return err
			}
			cmd = &mdm.Command{CommandUUID: string(v), Raw: plain}
			cmd.Command.RequestType = string(reqType)
			return nil
		}
		return nil
	})
	return cmd, err
}

// RemoveCommand takes one command out of the enrollment's queue (an expired command). Its body
// stays, as nanomdm's does, for other enrollments it may be queued for.
func (q *commandQueue) RemoveCommand(ctx context.Context, id, uuid string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return q.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketQueueStatus).Delete(statusKey(id, uuid)); err != nil {
			return err
		}
		c := tx.Bucket(bucketQueueEntries).Cursor()
		prefix := queuePrefix(id)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if string(v) == uuid {
				return c.Delete()
			}
		}
		return nil
	})
}

// ClearQueue removes every queued command of the enrollment.
func (q *commandQueue) ClearQueue(r *mdm.Request) error {
	return q.db.Update(func(tx *bbolt.Tx) error {
		prefix := queuePrefix(r.ID)
		for _, b := range []*bbolt.Bucket{tx.Bucket(bucketQueueEntries), tx.Bucket(bucketQueueStatus)} {
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// seal returns the body as stored: sealed when the queue has a sealer.
func (q *commandQueue) seal(uuid string, raw []byte) []byte {
	if q.sealer == nil {
		return raw
	}
	return q.sealer.Seal("mdm-command/"+uuid, raw)
}

// open returns a copy of the stored body in plain text.
func (q *commandQueue) open(uuid string, stored []byte) ([]byte, error) {
	if q.sealer == nil {
		return bytes.Clone(stored), nil
	}
	plain, err := q.sealer.Open("mdm-command/"+uuid, stored)
	if err != nil {
		return nil, fmt.Errorf("store: queued command %s cannot be opened with the master key: %w", uuid, err)
	}
	return plain, nil
}

// microTime formats t as nanomdm's kv storage stores last-seen times.
func microTime(t time.Time) []byte { return []byte(strconv.FormatInt(t.UnixMicro(), 10)) }
