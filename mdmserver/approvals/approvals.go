// Package approvals keeps the requests that need a second person before they are carried out:
// the two-person rule for full wipes. A request is made by one token holder and approved or
// rejected by another; it expires if nobody decides in time. Requests are never deleted, so the
// store answers, long after, who asked, who agreed and when.
package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// States of a request. Expired is never stored: a pending request past its expiry reads as
// expired, so no sweeper has to run for a request to lapse.
const (
	StatePending  = "pending"
	StateApproved = "approved"
	StateRejected = "rejected"
	StateExpired  = "expired"
)

// Request is one action awaiting (or past) a second person's decision.
type Request struct {
	ID       string `json:"id"`
	Action   string `json:"action"` // e.g. "wipe"
	DeviceID string `json:"device_id"`
	Group    string `json:"group,omitempty"`
	Reason   string `json:"reason"`
	Mode     string `json:"mode,omitempty"`
	State    string `json:"state"`
	// RequestedBy and DecidedBy name the token holders ("<name> (<token id>)"); the token IDs
	// are kept apart to tell the two people apart.
	RequestedBy      string    `json:"requested_by"`
	RequesterTokenID string    `json:"requester_token_id"`
	CreatedAt        time.Time `json:"created_at"`
	ExpiresAt        time.Time `json:"expires_at"`
	DecidedBy        string    `json:"decided_by,omitempty"`
	DeciderTokenID   string    `json:"decider_token_id,omitempty"`
	DecidedAt        time.Time `json:"decided_at,omitzero"`
	Comment          string    `json:"comment,omitempty"`
	// CommandID is the command sent once the request was approved.
	CommandID string `json:"command_id,omitempty"`
	// Params are the action's parameters, opaque here and sealed by the caller when they hold
	// secrets (a wipe's PIN). Never shown.
	Params []byte `json:"-"`
}

// stored is a Request as kept in bbolt: Params is not part of the JSON API, but it is stored.
type stored struct {
	Request
	Params []byte `json:"params,omitempty"`
}

// Errors callers test for with errors.Is.
var (
	ErrNotFound   = errors.New("approvals: no such request")
	ErrDecided    = errors.New("approvals: the request was already decided")
	ErrExpired    = errors.New("approvals: the request expired")
	ErrSamePerson = errors.New("approvals: the requester cannot decide their own request")
)

var bucket = []byte("approvals") // id -> stored JSON

// Store keeps requests in bbolt.
type Store struct {
	db  *bbolt.DB
	now func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for creation and expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on db, creating its bucket.
func New(db *bbolt.DB, opts ...Option) (*Store, error) {
	s := &Store{db: db, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("approvals: create bucket: %w", err)
	}
	return s, nil
}

// Create stores r as a new pending request that expires after ttl, and returns it with its ID.
// also runs first in the same transaction, and may set the request's Params (sealed under its
// ID) and write the caller's audit entry.
func (s *Store) Create(ctx context.Context, r Request, ttl time.Duration, also func(*bbolt.Tx, *Request) error) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.Action == "" || r.DeviceID == "" || r.RequesterTokenID == "" {
		return nil, errors.New("approvals: a request needs an action, a device and a requester")
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	now := s.now().UTC()
	r.ID, r.State, r.CreatedAt, r.ExpiresAt = "ap_"+hex.EncodeToString(b), StatePending, now, now.Add(ttl)
	r.DecidedBy, r.DeciderTokenID, r.DecidedAt, r.CommandID = "", "", time.Time{}, ""
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if also != nil {
			if err := also(tx, &r); err != nil {
				return err
			}
		}
		return put(tx, &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Decide records deciderTokenID's decision on request id, if it is still pending, unexpired and
// not the decider's own. also runs in the same transaction with the decided request (the
// caller's audit entry); an error from it undoes the decision.
func (s *Store) Decide(ctx context.Context, id string, approve bool, decidedBy, deciderTokenID, comment string, also func(*bbolt.Tx, *Request) error) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *Request
	err := s.db.Update(func(tx *bbolt.Tx) error {
		r, err := get(tx, id)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		switch {
		case r.State != StatePending:
			return fmt.Errorf("%w: it is %s", ErrDecided, r.State)
		case !now.Before(r.ExpiresAt):
			return fmt.Errorf("%w at %s", ErrExpired, r.ExpiresAt.Format(time.RFC3339))
		case r.RequesterTokenID == deciderTokenID:
			return ErrSamePerson
		}
		r.State = StateRejected
		if approve {
			r.State = StateApproved
		}
		r.DecidedBy, r.DeciderTokenID, r.DecidedAt, r.Comment = decidedBy, deciderTokenID, now, comment
		if err := put(tx, r); err != nil {
			return err
		}
		if also != nil {
			if err := also(tx, r); err != nil {
				return err
			}
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetCommand records the command an approved request was carried out with.
func (s *Store) SetCommand(ctx context.Context, id, commandID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		r, err := get(tx, id)
		if err != nil {
			return err
		}
		r.CommandID = commandID
		return put(tx, r)
	})
}

// Get returns one request, with its Params.
func (s *Store) Get(ctx context.Context, id string) (*Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var r *Request
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		r, err = get(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.expire(r)
	return r, nil
}

// List returns the requests in state (all when empty), newest first.
func (s *Store) List(ctx context.Context, state string) ([]Request, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []Request{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			r, err := decode(v)
			if err != nil {
				return fmt.Errorf("approvals: request %s: %w", k, err)
			}
			s.expire(r)
			if state == "" || r.State == state {
				r.Params = nil
				out = append(out, *r)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Request) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, err
}

// Pending returns the device's request awaiting a decision, or nil.
func (s *Store) Pending(ctx context.Context, deviceID string) (*Request, error) {
	list, err := s.List(ctx, StatePending)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].DeviceID == deviceID {
			return &list[i], nil
		}
	}
	return nil, nil
}

// expire shows a pending request past its expiry as expired.
func (s *Store) expire(r *Request) {
	if r.State == StatePending && !s.now().Before(r.ExpiresAt) {
		r.State = StateExpired
	}
}

func get(tx *bbolt.Tx, id string) (*Request, error) {
	v := tx.Bucket(bucket).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return decode(v)
}

func decode(v []byte) (*Request, error) {
	var st stored
	if err := json.Unmarshal(v, &st); err != nil {
		return nil, err
	}
	st.Request.Params = st.Params
	return &st.Request, nil
}

func put(tx *bbolt.Tx, r *Request) error {
	v, err := json.Marshal(stored{Request: *r, Params: r.Params})
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(r.ID), v)
}
