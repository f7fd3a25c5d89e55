// Package commands tracks the Apple MDM commands Hale sends: it enqueues them in nanomdm and
// pushes the device, records each command's state (queued, pushed, acknowledged, error, not-now,
// expired), and keeps every result the device reports, parsed, per device and command UUID.
//
// Results arrive through Hook, a decorator that wraps nanomdm's check-in and command service the
// way nanomdm's own certauth does: it records the result, then hands the request on.
package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/statecount"
)

// State is where a command is in its life.
type State string

// Command states. A command moves queued → pushed → acknowledged | error | not_now; not_now
// returns to pushed-like waiting until the device answers for good; expired is set by an
// operator's deadline passing before any answer; cancelled means nanomdm dropped it from the
// device's queue (the device enrolled again, which clears its queue), so it will never be sent.
const (
	StateQueued       State = "queued"
	StatePushed       State = "pushed"
	StateAcknowledged State = "acknowledged"
	StateError        State = "error"
	StateNotNow       State = "not_now"
	StateExpired      State = "expired"
	StateCancelled    State = "cancelled"
)

// Final reports whether no further device answer is expected.
func (s State) Final() bool {
	return s == StateAcknowledged || s == StateError || s == StateExpired || s == StateCancelled
}

// Record is one command sent to one enrollment.
type Record struct {
	UUID         string           `json:"command_id"`
	EnrollmentID string           `json:"enrollment_id"`
	RequestType  string           `json:"request_type"`
	State        State            `json:"state"`
	RequestedBy  string           `json:"requested_by,omitempty"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
	PushedAt     time.Time        `json:"pushed_at,omitzero"`
	AnsweredAt   time.Time        `json:"answered_at,omitzero"`
	PushError    string           `json:"push_error,omitempty"`
	ErrorChain   []mdm.ErrorChain `json:"error_chain,omitempty"`
	// Detail says why a command ended without an answer (cancelled or expired).
	Detail string `json:"detail,omitempty"`
}

// Result is a device's answer to a command, parsed.
type Result struct {
	EnrollmentID string           `json:"enrollment_id"`
	CommandUUID  string           `json:"command_id"`
	RequestType  string           `json:"request_type,omitempty"`
	Status       string           `json:"status"`
	ReceivedAt   time.Time        `json:"received_at"`
	ErrorChain   []mdm.ErrorChain `json:"error_chain,omitempty"`

	SecurityInfo      *SecurityInfo      `json:"security_info,omitempty"`
	DeviceInformation *DeviceInformation `json:"device_information,omitempty"`
	ProfileList       []Profile          `json:"profile_list,omitempty"`
}

var (
	bucketRecords = []byte("commands")
	bucketResults = []byte("command_results")
)

// ErrNotFound is returned for an unknown command.
var ErrNotFound = errors.New("commands: no such command")

// Store keeps command records and results in bbolt, keyed "<enrollment id>\x00<command uuid>" so
// one device's commands are a prefix scan.
type Store struct {
	db *bbolt.DB
	// states counts the records per state, for metrics: every write of a record moves it.
	states *statecount.Counts
}

// States are every command state, in the order a command goes through them.
var States = []State{StateQueued, StatePushed, StateNotNow, StateAcknowledged, StateError, StateExpired, StateCancelled}

// NewStore returns a Store on db, creating its buckets. It reads every record's state once, to
// count them; later writes keep the counts.
func NewStore(db *bbolt.DB) (*Store, error) {
	s := &Store{db: db, states: statecount.New()}
	for _, st := range States {
		s.states.Add(string(st), 0)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketResults} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			s.states.Add(stateOfRecord(v), 1)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("commands: open: %w", err)
	}
	return s, nil
}

// StateCounts returns how many commands are in each state, from memory.
func (s *Store) StateCounts() map[string]int64 { return s.states.Snapshot() }

// stateOfRecord reads the state of a stored record without decoding the rest of it.
func stateOfRecord(v []byte) string {
	var r struct {
		State State `json:"state"`
	}
	_ = json.Unmarshal(v, &r) // an undecodable record counts under ""
	return string(r.State)
}

func key(enrollmentID, uuid string) []byte {
	return []byte(enrollmentID + "\x00" + uuid)
}

// Put stores rec (insert or replace).
func (s *Store) Put(ctx context.Context, rec *Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		k := key(rec.EnrollmentID, rec.UUID)
		old := ""
		if prev := b.Get(k); prev != nil {
			old = stateOfRecord(prev)
		}
		s.states.Move(tx, old, string(rec.State))
		return b.Put(k, v)
	})
}

// Update applies fn to the stored record in one transaction.
func (s *Store) Update(ctx context.Context, enrollmentID, uuid string, fn func(*Record)) (*Record, error) {
	var rec *Record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		rec, err = s.updateTx(tx, enrollmentID, uuid, fn)
		return err
	})
	return rec, err
}

func (s *Store) updateTx(tx *bbolt.Tx, enrollmentID, uuid string, fn func(*Record)) (*Record, error) {
	b := tx.Bucket(bucketRecords)
	k := key(enrollmentID, uuid)
	v := b.Get(k)
	if v == nil {
		return nil, ErrNotFound
	}
	rec := new(Record)
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, err
	}
	old := rec.State
	fn(rec)
	s.states.Move(tx, string(old), string(rec.State))
	nv, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return rec, b.Put(k, nv)
}

// Get returns one command record.
func (s *Store) Get(ctx context.Context, enrollmentID, uuid string) (*Record, error) {
	var rec *Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get(key(enrollmentID, uuid))
		if v == nil {
			return ErrNotFound
		}
		rec = new(Record)
		return json.Unmarshal(v, rec)
	})
	return rec, err
}

// List returns an enrollment's command records, oldest first.
func (s *Store) List(ctx context.Context, enrollmentID string) ([]*Record, error) {
	var out []*Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketRecords), enrollmentID, func(v []byte) error {
			rec := new(Record)
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	sortByCreated(out)
	return out, err
}

// CancelOpen marks every unanswered command of an enrollment cancelled with the reason given,
// in one transaction, and returns them. Call it when nanomdm cleared the enrollment's queue, so
// the command list never shows as queued what will never be delivered.
func (s *Store) CancelOpen(ctx context.Context, enrollmentID, reason string, at time.Time) ([]*Record, error) {
	var out []*Record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		out = nil
		b := tx.Bucket(bucketRecords)
		prefix := []byte(enrollmentID + "\x00")
		var open []*Record
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rec := new(Record)
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			if !rec.State.Final() {
				open = append(open, rec)
			}
		}
		for _, rec := range open {
			s.states.Move(tx, string(rec.State), string(StateCancelled))
			rec.State, rec.Detail, rec.UpdatedAt = StateCancelled, reason, at.UTC()
			v, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := b.Put(key(rec.EnrollmentID, rec.UUID), v); err != nil {
				return err
			}
		}
		out = open
		return nil
	})
	return out, err
}

// Open returns an enrollment's unanswered commands (queued, pushed or deferred), oldest first.
func (s *Store) Open(ctx context.Context, enrollmentID string) ([]*Record, error) {
	all, err := s.List(ctx, enrollmentID)
	var out []*Record
	for _, rec := range all {
		if !rec.State.Final() {
			out = append(out, rec)
		}
	}
	return out, err
}

// Unanswered returns the commands created before cutoff that no device has answered (queued,
// pushed, or deferred with NotNow).
func (s *Store) Unanswered(ctx context.Context, cutoff time.Time) ([]*Record, error) {
	var out []*Record
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			rec := new(Record)
			if err := json.Unmarshal(v, rec); err != nil {
				return err
			}
			if !rec.State.Final() && rec.CreatedAt.Before(cutoff) {
				out = append(out, rec)
			}
			return nil
		})
	})
	return out, err
}

// Result returns the stored result of a command.
func (s *Store) Result(ctx context.Context, enrollmentID, uuid string) (*Result, error) {
	var res *Result
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketResults).Get(key(enrollmentID, uuid))
		if v == nil {
			return ErrNotFound
		}
		res = new(Result)
		return json.Unmarshal(v, res)
	})
	return res, err
}

// Results returns every stored result of an enrollment.
func (s *Store) Results(ctx context.Context, enrollmentID string) ([]*Result, error) {
	var out []*Result
	err := s.db.View(func(tx *bbolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketResults), enrollmentID, func(v []byte) error {
			res := new(Result)
			if err := json.Unmarshal(v, res); err != nil {
				return err
			}
			out = append(out, res)
			return nil
		})
	})
	return out, err
}

// saveResult stores res and moves the matching record (if Hale sent the command) to the state
// the device answered, in one transaction: a result is never stored without its state change.
// Once a command has a final answer, later answers for it (a device resending after a lost
// response) change nothing; saved reports whether res was recorded.
func (s *Store) saveResult(res *Result, inTx func(*bbolt.Tx, *Result) error) (saved bool, err error) {
	v, err := json.Marshal(res)
	if err != nil {
		return false, err
	}
	// Batched with other devices' results; the function is idempotent (it checks what is stored),
	// as db.Batch may run it twice.
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		saved = false
		results := tx.Bucket(bucketResults)
		k := key(res.EnrollmentID, res.CommandUUID)
		if prev := results.Get(k); prev != nil {
			var old Result
			if json.Unmarshal(prev, &old) == nil && old.Status != "NotNow" {
				return nil
			}
		}
		if err := results.Put(k, v); err != nil {
			return err
		}
		saved = true
		_, err := s.updateTx(tx, res.EnrollmentID, res.CommandUUID, func(rec *Record) {
			rec.State = stateOf(res.Status)
			rec.AnsweredAt = res.ReceivedAt
			rec.UpdatedAt = res.ReceivedAt
			rec.ErrorChain = res.ErrorChain
		})
		if err != nil && !errors.Is(err, ErrNotFound) { // not found: enqueued outside Hale (nanomdm's API)
			return err
		}
		if inTx != nil {
			return inTx(tx, res)
		}
		return nil
	})
	return saved, err
}

func stateOf(status string) State {
	switch status {
	case "Acknowledged":
		return StateAcknowledged
	case "NotNow":
		return StateNotNow
	default:
		return StateError
	}
}

func scanPrefix(b *bbolt.Bucket, enrollmentID string, fn func(v []byte) error) error {
	prefix := []byte(enrollmentID + "\x00")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}
