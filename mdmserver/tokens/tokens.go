// Package tokens keeps Hale's API bearer tokens: who may call the admin and access APIs, and in
// which role. Only a SHA-256 hash of each secret is stored; the secret is shown once, at creation.
//
// A token reads "hale_<id>_<secret>": the id finds the record without scanning, the 256-bit secret
// proves possession. A fast hash is enough because the secret is random, not a password.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Role is what a token may do. Each route names the roles it allows.
type Role string

// The roles. Admin may do everything; the others are scoped to a job.
const (
	RoleAdmin    Role = "admin"    // tokens, push certificate, everything else
	RoleIT       Role = "it"       // enrollments, policies, inventory, lock
	RoleSecurity Role = "security" // lock, lost mode, wipe, approvals, audit, drills
	RoleAuditor  Role = "auditor"  // read-only: inventory and the audit log
	RoleAccess   Role = "access"   // the messaging backend: /access/v1 decisions
)

// Roles lists every role, for validation and documentation.
var Roles = []Role{RoleAdmin, RoleIT, RoleSecurity, RoleAuditor, RoleAccess}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Token is a stored token record. It never holds the secret.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Person is who the token belongs to. Names say what a token is for and may repeat; the
	// two-person rule and the audit log count people. See [ValidPerson].
	Person    string    `json:"person"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// CreatorTokenID and CreatorPerson are the token that created this one and its person
	// (empty for the bootstrap token, which the server made). [Store.Creators] follows them.
	CreatorTokenID string    `json:"creator_token_id,omitempty"`
	CreatorPerson  string    `json:"creator_person,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	RevokedAt      time.Time `json:"revoked_at,omitzero"`
	// Hash is the hex SHA-256 of the secret part.
	Hash string `json:"hash"`
}

// State is "active", "expired" or "revoked" at now.
func (t *Token) State(now time.Time) string {
	switch {
	case !t.RevokedAt.IsZero():
		return "revoked"
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return "expired"
	}
	return "active"
}

// Errors returned by Authenticate. They are deliberately coarse toward callers: the HTTP layer
// answers 401 for all of them, and logs which one.
var (
	ErrMalformed = errors.New("tokens: malformed token")
	ErrUnknown   = errors.New("tokens: unknown token")
	ErrExpired   = errors.New("tokens: token expired")
	ErrRevoked   = errors.New("tokens: token revoked")
	ErrNotFound  = errors.New("tokens: no such token")
)

const prefix = "hale_"

var bucket = []byte("api_tokens")

// Store keeps tokens in a bbolt bucket.
type Store struct {
	db          *bbolt.DB
	now         func() time.Time
	log         *slog.Logger
	onForbidden func(*http.Request, *Token)
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithOnForbidden sets a function Require calls when a valid token is refused for its role, before
// answering 403: the server puts those refusals on the audit record, since a token probing for
// what it may do is worth a security engineer's look. (Unknown tokens are only logged: anyone
// can send one, and each audit entry costs a disk sync.)
func WithOnForbidden(fn func(r *http.Request, t *Token)) Option {
	return func(s *Store) { s.onForbidden = fn }
}

// WithLogger sets where the store reports the migration it runs at start.
func WithLogger(log *slog.Logger) Option { return func(s *Store) { s.log = log } }

// New returns a Store on db, creating its bucket and giving every token stored before tokens
// had people a person (see [migratePeople]), in one transaction.
func New(db *bbolt.DB, opts ...Option) (*Store, error) {
	s := &Store{db: db, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	var migrated int
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		migrated, err = migratePeople(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: open: %w", err)
	}
	if migrated > 0 {
		s.log.Warn("tokens: gave each token stored without a person a person named after the token; "+
			"tokens that share a name now belong to one person", "tokens", migrated)
	}
	return s, nil
}

// NewRequest describes a token to create.
type NewRequest struct {
	Name string
	Role Role
	// Person is who the token belongs to. Empty: the creator's person, or (with no creator)
	// a person named after the token.
	Person    string
	TTL       time.Duration // zero: never expires
	CreatedBy string
	// Creator is the token that creates this one, nil for the server's own (bootstrap).
	Creator *Token
}

// Create makes a token and returns its record and the secret token string, which is never
// available again. The record is committed before Create returns.
func (s *Store) Create(ctx context.Context, req NewRequest) (*Token, string, error) {
	if !req.Role.Valid() {
		return nil, "", fmt.Errorf("tokens: unknown role %q (want one of %v)", req.Role, Roles)
	}
	if req.Name == "" || len(req.Name) > 128 {
		return nil, "", errors.New("tokens: name must be 1 to 128 characters")
	}
	if req.TTL < 0 {
		return nil, "", errors.New("tokens: ttl must not be negative")
	}
	person := req.Person
	switch {
	case person != "":
	case req.Creator != nil:
		person = req.Creator.Person
	default:
		person = req.Name
	}
	if err := ValidPerson(person); err != nil {
		return nil, "", err
	}
	id, secret := randomHex(8), randomHex(32)
	now := s.now().UTC()
	t := &Token{ID: id, Name: req.Name, Role: req.Role, Person: person, CreatedAt: now, CreatedBy: req.CreatedBy, Hash: hashSecret(secret)}
	if req.Creator != nil {
		t.CreatorTokenID, t.CreatorPerson = req.Creator.ID, req.Creator.Person
	}
	if req.TTL > 0 {
		t.ExpiresAt = now.Add(req.TTL)
	}
	if err := s.put(t); err != nil {
		return nil, "", err
	}
	return t, prefix + id + "_" + secret, nil
}

// Authenticate returns the active token for a presented token string.
func (s *Store) Authenticate(ctx context.Context, presented string) (*Token, error) {
	id, secret, ok := parse(presented)
	if !ok {
		return nil, ErrMalformed
	}
	t, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hashSecret(secret))) != 1 {
		return nil, ErrUnknown
	}
	switch t.State(s.now()) {
	case "revoked":
		return nil, ErrRevoked
	case "expired":
		return nil, ErrExpired
	}
	return t, nil
}

// Get returns the token record with id.
func (s *Store) Get(ctx context.Context, id string) (*Token, error) {
	var t *Token
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		t = new(Token)
		return json.Unmarshal(v, t)
	})
	return t, err
}

// List returns every token record, oldest first.
func (s *Store) List(ctx context.Context) ([]*Token, error) {
	var out []*Token
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			t := new(Token)
			if err := json.Unmarshal(v, t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, err
}

// Revoke marks the token revoked. Revoking twice keeps the first time.
func (s *Store) Revoke(ctx context.Context, id string) (*Token, error) {
	var t *Token
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		t = new(Token)
		if err := json.Unmarshal(v, t); err != nil {
			return err
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt = s.now().UTC()
		}
		return putTx(b, t)
	})
	return t, err
}

// Count returns how many tokens exist (used to decide whether to bootstrap an admin token).
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	err := s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n, err
}

func (s *Store) put(t *Token) error {
	return s.db.Update(func(tx *bbolt.Tx) error { return putTx(tx.Bucket(bucket), t) })
}

func putTx(b *bbolt.Bucket, t *Token) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(t.ID), v)
}

func parse(s string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(s, prefix)
	if !found || len(s) > 128 {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(secret) != 64 || !isHex(id) || !isHex(secret) {
		return "", "", false
	}
	return id, secret, true
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("tokens: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
