// Package agentcmd queues commands (lock, wipe) for mdmagent devices and delivers them by long
// poll. A command is committed to bbolt before it is acknowledged to the caller and stays until
// the agent reports its result, so a server restart between "wipe accepted" and "agent polled"
// loses nothing.
package agentcmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/statecount"
)

// Command types an agent carries out.
const (
	TypeLock = "lock"
	TypeWipe = "wipe"
)

// Command states, named as the MDM command states are (mdmserver/commands) so that an operator
// reads one vocabulary for both kinds of device.
const (
	StateQueued       = "queued"       // committed, not yet fetched
	StateDelivered    = "delivered"    // handed to the agent at least once
	StateAcknowledged = "acknowledged" // the agent reported success
	StatePartial      = "partial"      // the agent did part of it: a wipe that left managed data behind
	StateError        = "error"        // the agent reported failure
)

// Result statuses, as the agent reports them. A wipe is done only when no path was refused or
// failed; otherwise it is partial.
const (
	ResultDone    = "done"
	ResultPartial = "partial"
	ResultFailed  = "failed"
)

// Outcomes of one managed data path in a selective wipe.
const (
	OutcomeRemoved = "removed" // it existed and is gone
	OutcomeAbsent  = "absent"  // nothing was there
	OutcomeRefused = "refused" // the agent would not touch it (Reason says why)
	OutcomeFailed  = "failed"  // removing it did not finish (Reason says why)
)

// Bounds on a result, so that a device cannot make the server store or show more.
const (
	MaxResultPaths = 4096
	maxDetail      = 4096
	maxPath        = 4096
	maxReason      = 1024
)

// Command is one command for one device, in the shape the agent receives it.
type Command struct {
	ID          string    `json:"id"`
	DeviceID    string    `json:"device_id"`
	Type        string    `json:"type"`
	Mode        string    `json:"mode,omitempty"` // wipe: selective (agents do selective only)
	Reason      string    `json:"reason,omitempty"`
	IssuedAt    time.Time `json:"issued_at"`
	IssuedBy    string    `json:"issued_by,omitempty"`
	ManagedData []string  `json:"managed_data,omitempty"`

	State       string    `json:"state"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Result      *Result   `json:"result,omitempty"`
}

// Result is what the agent reports for a command. Paths came later than Removed: an agent that
// predates them reports a wipe's removed paths only.
type Result struct {
	Status     string       `json:"status"` // done, partial (wipe only) or failed
	Detail     string       `json:"detail,omitempty"`
	Removed    []string     `json:"removed,omitempty"`
	Paths      []PathResult `json:"paths,omitempty"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
}

// PathResult is what a selective wipe did with one managed data path.
type PathResult struct {
	Path    string `json:"path"`              // on the device, "~/" expanded per user
	Managed string `json:"managed,omitempty"` // the policy's entry, when it differs
	Outcome string `json:"outcome"`           // removed, absent, refused or failed
	Reason  string `json:"reason,omitempty"`
}

// Count returns how many paths had each outcome.
func (r *Result) Count() map[string]int {
	n := map[string]int{}
	for _, p := range r.Paths {
		n[p.Outcome]++
	}
	return n
}

// check validates r as the result of a command of type typ, and makes a wipe that says done
// while listing paths it refused or failed partial: the paths are the evidence.
func (r *Result) check(typ string) error {
	switch {
	case r.Status != ResultDone && r.Status != ResultPartial && r.Status != ResultFailed:
		return fmt.Errorf("%w: status must be done, partial or failed", ErrInvalid)
	case r.Status == ResultPartial && typ != TypeWipe:
		return fmt.Errorf("%w: only a wipe can be partial", ErrInvalid)
	case len(r.Detail) > maxDetail || len(r.Removed) > MaxResultPaths || len(r.Paths) > MaxResultPaths:
		return fmt.Errorf("%w: result too large (detail up to %d bytes, up to %d paths)", ErrInvalid, maxDetail, MaxResultPaths)
	}
	for _, p := range r.Removed {
		if len(p) > maxPath {
			return fmt.Errorf("%w: a removed path is longer than %d bytes", ErrInvalid, maxPath)
		}
	}
	for _, p := range r.Paths {
		switch {
		case p.Path == "" || len(p.Path) > maxPath || len(p.Managed) > maxPath || len(p.Reason) > maxReason:
			return fmt.Errorf("%w: each path needs a path of at most %d bytes and a reason of at most %d", ErrInvalid, maxPath, maxReason)
		case p.Outcome != OutcomeRemoved && p.Outcome != OutcomeAbsent && p.Outcome != OutcomeRefused && p.Outcome != OutcomeFailed:
			return fmt.Errorf("%w: a path's outcome must be removed, absent, refused or failed", ErrInvalid)
		}
	}
	if n := r.Count(); r.Status == ResultDone && n[OutcomeRefused]+n[OutcomeFailed] > 0 {
		r.Status = ResultPartial
	}
	return nil
}

// stateOf is the command state each result status leaves.
var stateOf = map[string]string{ResultDone: StateAcknowledged, ResultPartial: StatePartial, ResultFailed: StateError}

// Finished reports whether the agent reported the command's result.
func (c *Command) Finished() bool {
	return c.State == StateAcknowledged || c.State == StatePartial || c.State == StateError
}

// Errors.
var (
	ErrNotFound = errors.New("agentcmd: no such command")
	ErrInvalid  = errors.New("agentcmd: invalid command")
)

var bucket = []byte("agent_commands") // "<device>\x00<id>" → Command JSON

// States are every command state.
var States = []string{StateQueued, StateDelivered, StateAcknowledged, StatePartial, StateError}

// Queue holds agent commands and wakes long polls.
type Queue struct {
	db  *bbolt.DB
	now func() time.Time
	// states counts the commands per state, for metrics: every write of a command moves it.
	states *statecount.Counts

	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// New returns a Queue on db. It reads every command's state once, to count them.
func New(db *bbolt.DB) (*Queue, error) {
	q := &Queue{db: db, now: time.Now, waiters: map[string][]chan struct{}{}, states: statecount.New(States...)}
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(_, v []byte) error {
			var c struct {
				State string `json:"state"`
			}
			_ = json.Unmarshal(v, &c) // an undecodable command counts under ""
			q.states.Add(c.State, 1)
			return nil
		})
	})
	return q, err
}

// StateCounts returns how many commands are in each state, from memory.
func (q *Queue) StateCounts() map[string]int64 { return q.states.Snapshot() }

func key(deviceID, id string) []byte { return []byte(deviceID + "\x00" + id) }

// NewID returns a new command ID, for callers that must record the ID before the command is
// enqueued.
func NewID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "c_" + hex.EncodeToString(b)
}

// Enqueue commits c for its device and wakes the device's long polls. IssuedAt and State are
// filled in, and ID when it is empty.
func (q *Queue) Enqueue(ctx context.Context, c Command) (*Command, error) {
	if c.DeviceID == "" || (c.Type != TypeLock && c.Type != TypeWipe) {
		return nil, fmt.Errorf("%w: device and a type of lock or wipe are required", ErrInvalid)
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	c.IssuedAt, c.State = q.now().UTC(), StateQueued
	v, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	err = q.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get(key(c.DeviceID, c.ID)) != nil {
			return fmt.Errorf("%w: command %s exists", ErrInvalid, c.ID)
		}
		q.states.Move(tx, "", c.State)
		return b.Put(key(c.DeviceID, c.ID), v)
	})
	if err != nil {
		return nil, err
	}
	q.wake(c.DeviceID)
	return &c, nil
}

// List returns every command of a device, oldest first.
func (q *Queue) List(ctx context.Context, deviceID string) ([]Command, error) {
	var out []Command
	err := q.db.View(func(tx *bbolt.Tx) error {
		prefix := []byte(deviceID + "\x00")
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var cmd Command
			if err := json.Unmarshal(v, &cmd); err != nil {
				return err
			}
			out = append(out, cmd)
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b Command) int { return a.IssuedAt.Compare(b.IssuedAt) })
	return out, err
}

// Get returns one command of a device, or ErrNotFound.
func (q *Queue) Get(ctx context.Context, deviceID, id string) (*Command, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var cmd *Command
	err := q.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get(key(deviceID, id))
		if v == nil {
			return ErrNotFound
		}
		cmd = new(Command)
		return json.Unmarshal(v, cmd)
	})
	if err != nil {
		return nil, err
	}
	return cmd, nil
}

// pending returns the device's unfinished commands and marks them delivered.
func (q *Queue) pending(deviceID string) ([]Command, error) {
	var out []Command
	err := q.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		prefix := []byte(deviceID + "\x00")
		c := b.Cursor()
		var updates [][2][]byte
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var cmd Command
			if err := json.Unmarshal(v, &cmd); err != nil {
				return err
			}
			if cmd.State != StateQueued && cmd.State != StateDelivered {
				continue
			}
			if cmd.State == StateQueued {
				q.states.Move(tx, cmd.State, StateDelivered)
				cmd.State, cmd.DeliveredAt = StateDelivered, q.now().UTC()
				nv, err := json.Marshal(cmd)
				if err != nil {
					return err
				}
				updates = append(updates, [2][]byte{bytes.Clone(k), nv})
			}
			out = append(out, cmd)
		}
		for _, u := range updates {
			if err := b.Put(u[0], u[1]); err != nil {
				return err
			}
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b Command) int { return a.IssuedAt.Compare(b.IssuedAt) })
	return out, err
}

// Wait returns the device's unfinished commands, waiting up to wait for one to arrive when there
// are none. Unfinished commands are returned again on every poll until their result is reported:
// an agent that crashed mid-command gets it again, and runs it idempotently by ID.
func (q *Queue) Wait(ctx context.Context, deviceID string, wait time.Duration) ([]Command, error) {
	ch := make(chan struct{}, 1)
	q.mu.Lock()
	q.waiters[deviceID] = append(q.waiters[deviceID], ch)
	q.mu.Unlock()
	defer q.unwait(deviceID, ch)

	cmds, err := q.pending(deviceID)
	if err != nil || len(cmds) > 0 || wait <= 0 {
		return cmds, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return q.pending(deviceID)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, nil
	}
}

func (q *Queue) wake(deviceID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ch := range q.waiters[deviceID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (q *Queue) unwait(deviceID string, ch chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.waiters[deviceID]
	if i := slices.Index(w, ch); i >= 0 {
		w = slices.Delete(w, i, i+1)
	}
	if len(w) == 0 {
		delete(q.waiters, deviceID)
	} else {
		q.waiters[deviceID] = w
	}
}

// Complete records the agent's result. Reporting the same command again is accepted and changes
// nothing (the agent may resend after a lost response); first is false then. also, when not nil,
// runs in the same transaction when the result is first recorded (the caller's audit entry).
//
// The command's state follows the result: acknowledged when done, partial, or error when failed.
func (q *Queue) Complete(ctx context.Context, deviceID, id string, r Result, also func(*bbolt.Tx, *Command) error) (cmd *Command, first bool, err error) {
	err = q.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		v := b.Get(key(deviceID, id))
		if v == nil {
			return ErrNotFound
		}
		cmd = new(Command)
		if err := json.Unmarshal(v, cmd); err != nil {
			return err
		}
		if cmd.Finished() {
			return nil
		}
		if err := r.check(cmd.Type); err != nil {
			return err
		}
		first = true
		q.states.Move(tx, cmd.State, stateOf[r.Status])
		cmd.State, cmd.FinishedAt, cmd.Result = stateOf[r.Status], q.now().UTC(), &r
		nv, err := json.Marshal(cmd)
		if err != nil {
			return err
		}
		if err := b.Put(key(deviceID, id), nv); err != nil {
			return err
		}
		if also != nil {
			return also(tx, cmd)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return cmd, first, nil
}
