// Package approvals keeps the requests that need a second person before they are carried out:
// the two-person rule for wipes. A request is made by one person and approved or rejected by
// another; it expires if nobody decides in time. Requests are never deleted, so the store
// answers, long after, who asked, who agreed and when.
//
// The rule counts people, not tokens (see [SecondPerson]): one person may hold several tokens,
// and whoever created a token could have created it for themselves.
package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	// RequestedBy and DecidedBy name the tokens ("<name> (<token id>)"); the people they
	// belong to, and the people who created the requester's token, are what the two-person
	// rule compares.
	RequestedBy       string    `json:"requested_by"`
	RequesterTokenID  string    `json:"requester_token_id"`
	RequesterPerson   string    `json:"requester_person,omitempty"`
	RequesterCreators []string  `json:"requester_creators,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	ExpiresAt         time.Time `json:"expires_at"`
	DecidedBy         string    `json:"decided_by,omitempty"`
	DeciderTokenID    string    `json:"decider_token_id,omitempty"`
	DeciderPerson     string    `json:"decider_person,omitempty"`
	DecidedAt         time.Time `json:"decided_at,omitzero"`
	Comment           string    `json:"comment,omitempty"`
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
	// ErrCreator is returned when one of the two created the other's token (directly or
	// through tokens they created): they could have minted it for themselves.
	ErrCreator = errors.New("approvals: one of the two people created the other's token")
)

// Party is a token holder taking part in a request.
type Party struct {
	// Name is the token as shown: "<name> (<token id>)".
	Name    string
	TokenID string
	// Person is who the token belongs to.
	Person string
	// Creators are the people whose tokens created this token, nearest first.
	Creators []string
}

// Requester is the party that made r.
func (r *Request) Requester() Party {
	return Party{Name: r.RequestedBy, TokenID: r.RequesterTokenID, Person: r.RequesterPerson, Creators: r.RequesterCreators}
}

// SecondPerson reports whether decider may decide a request made by requester under the
// two-person rule: they are different tokens of different people, and neither person created
// the other's token, directly or through a token they created (an admin who mints a token for a
// made-up person still created it). The error says which part failed, in words an operator can
// act on. People are compared without regard to case; a party without a person (a request
// stored before tokens had people) is compared by token alone.
func SecondPerson(requester, decider Party) error {
	same := func(a, b string) bool { return a != "" && b != "" && strings.EqualFold(a, b) }
	switch {
	case requester.TokenID == decider.TokenID:
		return fmt.Errorf("%w: it was requested with the same token", ErrSamePerson)
	case same(requester.Person, decider.Person):
		return fmt.Errorf("%w: both tokens belong to %q", ErrSamePerson, decider.Person)
	case slices.ContainsFunc(requester.Creators, func(p string) bool { return same(p, decider.Person) }):
		return fmt.Errorf("%w: %q created the requester's token", ErrCreator, decider.Person)
	case slices.ContainsFunc(decider.Creators, func(p string) bool { return same(p, requester.Person) }):
		return fmt.Errorf("%w: the requester %q created the approver's token", ErrCreator, requester.Person)
	}
	return nil
}

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
	r.DecidedBy, r.DeciderTokenID, r.DeciderPerson, r.DecidedAt, r.CommandID = "", "", "", time.Time{}, ""
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

// Decide records decider's decision on request id, if it is still pending, unexpired and
// decider is a second person to its requester ([SecondPerson]). also runs in the same
// transaction with the decided request (the caller's audit entry); an error from it undoes the
// decision.
func (s *Store) Decide(ctx context.Context, id string, approve bool, decider Party, comment string, also func(*bbolt.Tx, *Request) error) (*Request, error) {
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
		}
		if err := SecondPerson(r.Requester(), decider); err != nil {
			return err
		}
		r.State = StateRejected
		if approve {
			r.State = StateApproved
		}
		r.DecidedBy, r.DeciderTokenID, r.DeciderPerson, r.DecidedAt, r.Comment = decider.Name, decider.TokenID, decider.Person, now, comment
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
