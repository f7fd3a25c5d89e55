package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/halemdm/hale/mdmserver/commands"
)

// The Apple MDM commands' buckets. Records and results are keyed "<enrollment id>\x00<command
// uuid>", so one device's commands are a prefix scan; their values are the JSON of
// commands.Record and commands.Result, whose field names are the stored format (a golden test,
// commands_test.go, holds them to it). PINs are keyed by command UUID, their value sealed.
var (
	BucketCommandRecords = []byte("commands")
	BucketCommandResults = []byte("command_results")
	BucketCommandPINs    = []byte("command_pins")
)

// commandsBuckets are the buckets of the Apple MDM commands.
var commandsBuckets = [][]byte{BucketCommandRecords, BucketCommandResults, BucketCommandPINs}

// Commands returns the Apple MDM commands of this transaction.
func (t *tx) Commands() commands.Repository { return commandsRepo{t} }

// commandsRepo is commands.Repository on one key-value transaction.
type commandsRepo struct{ t *tx }

func commandKey(enrollmentID, uuid string) []byte { return []byte(enrollmentID + "\x00" + uuid) }

// get decodes the value under key in bucket name into v, or returns commands.ErrNotFound.
func (r commandsRepo) get(name, key []byte, v any) error {
	b, err := bucket(r.t.tx, name)
	if err != nil {
		return err
	}
	raw := b.Get(key)
	if raw == nil {
		return commands.ErrNotFound
	}
	// json.Unmarshal copies: nothing decoded points into the transaction's memory.
	return json.Unmarshal(raw, v)
}

// scan calls fn with every value of bucket name under an enrollment's prefix.
func (r commandsRepo) scan(name []byte, enrollmentID string, fn func(v []byte) error) error {
	b, err := bucket(r.t.tx, name)
	if err != nil {
		return err
	}
	prefix := []byte(enrollmentID + "\x00")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Record returns one command record.
func (r commandsRepo) Record(ctx context.Context, enrollmentID, uuid string) (*commands.Record, error) {
	rec := new(commands.Record)
	if err := r.get(BucketCommandRecords, commandKey(enrollmentID, uuid), rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// PutRecord stores rec and moves the state counts from the state of the record it replaces.
func (r commandsRepo) PutRecord(ctx context.Context, rec *commands.Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketCommandRecords)
	if err != nil {
		return err
	}
	k := commandKey(rec.EnrollmentID, rec.UUID)
	old := ""
	if prev := b.Get(k); prev != nil {
		old = StateOf(prev)
	}
	if err := b.Put(k, v); err != nil {
		return err
	}
	r.t.tx.MoveState(BucketCommandRecords, old, string(rec.State))
	return nil
}

// Records returns an enrollment's records in key (command UUID) order.
func (r commandsRepo) Records(ctx context.Context, enrollmentID string) ([]*commands.Record, error) {
	var out []*commands.Record
	err := r.scan(BucketCommandRecords, enrollmentID, func(v []byte) error {
		rec := new(commands.Record)
		if err := json.Unmarshal(v, rec); err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// EachRecord calls fn with every record.
func (r commandsRepo) EachRecord(ctx context.Context, fn func(*commands.Record) error) error {
	b, err := bucket(r.t.tx, BucketCommandRecords)
	if err != nil {
		return err
	}
	return b.ForEach(func(_, v []byte) error {
		rec := new(commands.Record)
		if err := json.Unmarshal(v, rec); err != nil {
			return err
		}
		return fn(rec)
	})
}

// StateCounts returns the counts of records per state the backend keeps (without reading the records).
func (r commandsRepo) StateCounts(ctx context.Context) (map[commands.State]int64, error) {
	snap, err := r.t.tx.StateCounts(BucketCommandRecords)
	if err != nil {
		return nil, err
	}
	out := make(map[commands.State]int64, len(snap))
	for s, n := range snap {
		out[commands.State(s)] = n
	}
	return out, nil
}

// Result returns one stored result.
func (r commandsRepo) Result(ctx context.Context, enrollmentID, uuid string) (*commands.Result, error) {
	res := new(commands.Result)
	if err := r.get(BucketCommandResults, commandKey(enrollmentID, uuid), res); err != nil {
		return nil, err
	}
	return res, nil
}

// PutResult stores res.
func (r commandsRepo) PutResult(ctx context.Context, res *commands.Result) error {
	v, err := json.Marshal(res)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketCommandResults)
	if err != nil {
		return err
	}
	return b.Put(commandKey(res.EnrollmentID, res.CommandUUID), v)
}

// Results returns an enrollment's results in key (command UUID) order.
func (r commandsRepo) Results(ctx context.Context, enrollmentID string) ([]*commands.Result, error) {
	var out []*commands.Result
	err := r.scan(BucketCommandResults, enrollmentID, func(v []byte) error {
		res := new(commands.Result)
		if err := json.Unmarshal(v, res); err != nil {
			return err
		}
		out = append(out, res)
		return nil
	})
	return out, err
}

// SealedPIN returns a copy of the sealed PIN stored for a command.
func (r commandsRepo) SealedPIN(ctx context.Context, uuid string) ([]byte, error) {
	b, err := bucket(r.t.tx, BucketCommandPINs)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(uuid))
	if v == nil {
		return nil, fmt.Errorf("%w: no PIN for command %s", commands.ErrNotFound, uuid)
	}
	return bytes.Clone(v), nil
}

// PutSealedPIN stores a command's sealed PIN.
func (r commandsRepo) PutSealedPIN(ctx context.Context, uuid string, sealed []byte) error {
	b, err := bucket(r.t.tx, BucketCommandPINs)
	if err != nil {
		return err
	}
	return b.Put([]byte(uuid), sealed)
}
