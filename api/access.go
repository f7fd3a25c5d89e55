package api

import "time"

// The access API's check (POST /access/v1/check) and its decisions are package posture's
// CheckRequest, CheckResponse and Decision: a messaging backend imports posture, not this
// package.

// PostureToken is the answer to POST /access/v1/token: a short-lived JWT (typ posture+jwt)
// stating the calling device's verdict, bound to the certificate it connected with.
type PostureToken struct {
	// Token is a compact JWS.
	Token string `json:"token"`
	// TokenType is posture+jwt.
	TokenType string    `json:"token_type"`
	ExpiresAt time.Time `json:"expires_at"`
	// InGrace warns the device that it is allowed only until GraceUntil unless it is fixed.
	InGrace    bool      `json:"in_grace"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
}
