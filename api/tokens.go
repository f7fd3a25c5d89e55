package api

import "time"

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	// Name says who or what uses the token; it names the actor in the audit log.
	Name string `json:"name"`
	// Role is admin, it, security, auditor or access.
	Role string `json:"role"`
	// Person is who the token belongs to, as the two-person rule and the audit log count
	// people; empty means the person of the token creating it.
	Person string `json:"person,omitempty"`
	// TTL is the token's lifetime, a Go duration of at least 1m ("720h"); empty means no expiry.
	TTL string `json:"ttl,omitempty"`
}

// Token is an API token as the admin API shows it, never its hash: the answer to POST and
// DELETE /api/v1/tokens/{id} and an entry of GET /api/v1/tokens.
type Token struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Person string `json:"person"`
	// State is active, expired or revoked.
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// CreatedByPerson is the person of the token that created this one.
	CreatedByPerson string    `json:"created_by_person,omitempty"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	RevokedAt       time.Time `json:"revoked_at,omitzero"`
	// Token is the secret, present only in the answer to its creation.
	Token string `json:"token,omitempty"`
}

// Tokens is GET /api/v1/tokens.
type Tokens struct {
	Tokens []Token `json:"tokens"`
}
