// Package tokens keeps Hale's API bearer tokens: who may call the admin and access APIs, and in
// which role. Only a SHA-256 hash of each secret is stored; the secret is shown once, at creation.
//
// A token reads "hale_<id>_<secret>": the id finds the record without scanning, the 256-bit secret
// proves possession. A fast hash is enough because the secret is random, not a password.
package tokens

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
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
	// (empty for the bootstrap token, which the server made). [Creators] follows them.
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
