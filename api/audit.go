package api

import (
	"encoding/json"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// AuditEntry is one entry of the audit log as GET /api/v1/audit lists it. GET
// /api/v1/audit/export gives the same entries as JSON Lines, exactly as stored and hashed.
type AuditEntry struct {
	// Index is the entry's position in the log, from 0.
	Index int64     `json:"index"`
	Time  time.Time `json:"time"`
	// Actor is who did it: "token:<id>", "device:<id>", "system", or "anonymous".
	Actor string `json:"actor"`
	Role  string `json:"role,omitempty"`
	// Person is who the actor's token belongs to.
	Person string `json:"person,omitempty"`
	// Source is the caller's network address.
	Source string `json:"source,omitempty"`
	// RequestID is the server's ID of the request; ClientRequestID the X-Request-Id the client
	// sent.
	RequestID       string `json:"request_id,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
	// Action is what was done, "noun.verb" ("device.wipe").
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	// Outcome is ok, denied or error.
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details,omitempty"`
	// Prev is the leaf hash of entry Index-1, zero for entry 0.
	Prev tlog.Hash `json:"prev"`
}

// AuditEntries is a page of GET /api/v1/audit?actor=&action=&target=&since=&until=&start=&limit=.
type AuditEntries struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the start of the following page, 0 when there are no more entries. A page may hold
	// fewer entries than asked (even none) while Next is not 0.
	Next int64 `json:"next"`
}

// AuditCheckpoint is GET /api/v1/audit/checkpoint: a fresh signed checkpoint of the log (a
// signed note of its size and tree hash) and the key the server says verifies it. Verify with
// the key you keep (DATA/audit.pub), not with this one.
type AuditCheckpoint struct {
	Checkpoint  string `json:"checkpoint"`
	VerifierKey string `json:"verifier_key"`
}

// AuditInclusionProof is GET /api/v1/audit/proof/inclusion?index=N&tree_size=M: proof that entry
// N is in the tree of M entries, with the entry's stored bytes.
type AuditInclusionProof struct {
	Index    int64            `json:"index"`
	TreeSize int64            `json:"tree_size"`
	Entry    json.RawMessage  `json:"entry"`
	Proof    tlog.RecordProof `json:"proof"`
	// TreeHash is for display; a verifier takes the hash from the signed checkpoint.
	TreeHash tlog.Hash `json:"tree_hash"`
}

// AuditConsistencyProof is GET /api/v1/audit/proof/consistency?old=N&new=M: proof that the tree
// of M entries extends the tree of N, so a saved checkpoint vouches for a newer one.
type AuditConsistencyProof struct {
	OldSize int64          `json:"old_size"`
	NewSize int64          `json:"new_size"`
	Proof   tlog.TreeProof `json:"proof"`
}
