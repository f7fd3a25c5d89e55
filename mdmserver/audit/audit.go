// Package audit keeps Hale's tamper-evident audit log: who did what, when, from where, and
// whether it was allowed, in a form anyone holding the public key can prove unaltered.
//
// # What is stored and hashed
//
// Each [Entry] is encoded once, with encoding/json, when it is appended; those exact bytes (one
// line of JSON, no trailing newline) are the entry's canonical form. They are stored, exported
// and hashed byte for byte; nothing ever re-encodes an entry to verify it. The entry's leaf hash
// is tlog.RecordHash(bytes) (RFC 6962: SHA-256 over 0x00 || bytes), and the leaves form the
// Merkle tree of golang.org/x/mod/sumdb/tlog, the one behind the Go checksum database. The
// tree's stored hashes are written in the same transaction as the entry, and, through [Append]
// on the [Repository] of the unit of work that makes the change being audited, in the same
// transaction as that change: a change is never committed without its audit entry, nor the
// entry without its hashes. Where it is kept is the [Repository]'s business (one per storage
// backend); the hashing, signing and proving here are the same on every backend.
//
// Each entry also records Prev, the leaf hash of the entry before it (all zero for entry 0).
// The chain adds nothing to the security of the tree, but it lets a verifier holding only an
// export and one checkpoint name the entry that was changed, rather than only say "the root
// differs".
//
// # Checkpoints
//
// A checkpoint is a signed note (golang.org/x/mod/sumdb/note, Ed25519) whose text is the C2SP
// tlog-checkpoint form that sum.golang.org also serves: tlog.FormatTree's text with the origin
// line first,
//
//	hale audit
//	42
//	<base64 tree hash>
//
// [Log.Checkpoint] makes one on demand and [Log.Run] periodically when the log grew. Every
// checkpoint is kept; entries are never edited or deleted.
//
// # Verifying offline
//
// With only an export (JSON Lines, [Log.Export] with an empty [Filter]), a checkpoint saved
// earlier and the log's public key (the vkey string of [GenerateKey]), [VerifyExport] checks the
// signature, that the lines hold indexes 0, 1, 2... in order, that every entry's Prev matches the
// previous line's hash, and that the tree hash over the first N lines equals the checkpoint's.
// Any changed, removed, inserted or reordered line fails, and the error (a [*VerifyError]) names
// the index. Newer checkpoints are proved to extend older ones with [Log.ConsistencyProof] and
// [VerifyConsistency]; one entry is proved to be in a checkpoint with [Log.InclusionProof] and
// [VerifyInclusion]. [Log.VerifyStored] is the server's own check of its database.
//
// # No PHI, no secrets
//
// The log is append-only and readable by every auditor, and exports leave the server: callers
// must never put PHI (patient data, message content) or secrets (tokens, PINs, keys, passwords)
// in any field, Details included. Record identifiers (device ID, token ID, command UUID, policy
// name and version) instead.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Outcomes of an audited call.
const (
	OutcomeOK     = "ok"     // the call did what was asked
	OutcomeDenied = "denied" // authentication or authorisation refused it
	OutcomeError  = "error"  // it was allowed but failed
)

// Size limits. They keep one entry small enough to read, list and verify without surprises, and
// bound what a verifier reads from an untrusted export.
const (
	MaxEntrySize    = 16 << 10 // encoded bytes of one entry (one export line)
	MaxFieldLen     = 1024     // bytes of any one string field or Details value
	MaxDetails      = 32       // keys in Details
	MaxDetailKeyLen = 64       // bytes of a Details key
)

// Entry is one audit record. Its JSON encoding, made once at append, is what is stored and hashed.
type Entry struct {
	// Index is the entry's position in the log, from 0. Append assigns it.
	Index int64 `json:"index"`
	// Time is when it happened, in UTC. Append fills it from the clock when zero.
	Time time.Time `json:"time"`
	// Actor is who did it: a token ID, "device:<id>", "system", or "anonymous" when no credential
	// was presented. Required.
	Actor string `json:"actor"`
	// Role is the actor's role, when it has one.
	Role string `json:"role,omitempty"`
	// Person is who the actor's token belongs to: the two-person rule and an auditor count
	// people, not tokens. Empty for devices, the system and anonymous callers.
	Person string `json:"person,omitempty"`
	// Source is the caller's network address.
	Source string `json:"source,omitempty"`
	// RequestID ties the entry to the request's logs. The server makes it for every request;
	// a client never chooses it.
	RequestID string `json:"request_id,omitempty"`
	// ClientRequestID is the X-Request-Id the client sent, sanitised and bounded, kept for
	// correlating with the client's own logs. It is the client's word, not an identifier.
	ClientRequestID string `json:"client_request_id,omitempty"`
	// Action is what was done, "noun.verb", e.g. "device.wipe". Required.
	Action string `json:"action"`
	// Target is what it was done to, e.g. a device ID or policy name.
	Target string `json:"target,omitempty"`
	// Outcome is OutcomeOK, OutcomeDenied or OutcomeError. Required.
	Outcome string `json:"outcome"`
	// Details holds further identifiers. Never PHI or secrets.
	Details map[string]string `json:"details,omitempty"`
	// Prev is the leaf hash of entry Index-1, zero for entry 0. Append sets it.
	Prev tlog.Hash `json:"prev"`
}

// Errors callers may test for with errors.Is.
var (
	ErrNotFound     = errors.New("audit: no such entry")
	ErrNoCheckpoint = errors.New("audit: no checkpoint yet")
	ErrInvalidEntry = errors.New("audit: invalid entry")
	// ErrOutOfRange is returned for a proof about entries or tree sizes the log does not have.
	ErrOutOfRange = errors.New("audit: out of range")
	// ErrCorrupt is returned by a Repository whose stored log cannot be read as one (a size,
	// index or hash of the wrong form, an entry stored past the size): only a damaged or
	// edited database holds one.
	ErrCorrupt = errors.New("audit: the stored log is corrupt: run VerifyStored")
)

// DefaultOrigin is the checkpoint origin line unless WithOrigin says otherwise.
const DefaultOrigin = "hale audit"

// Append appends e to the log kept in r, in r's transaction, and returns its index: the entry
// and its tree hashes commit or roll back with whatever else that transaction writes, such as
// the change being audited. It assigns e.Index and e.Prev, and e.Time when zero (from the wall
// clock; [Log.Append] uses the log's). The index is final only once the transaction commits.
func Append(ctx context.Context, r Repository, e Entry) (int64, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	n, err := r.Size(ctx)
	if err != nil {
		return 0, err
	}
	hr := hashReader{ctx: ctx, r: r}
	e.Index = n
	e.Prev = tlog.Hash{}
	if n > 0 {
		prev, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, n-1)})
		if err != nil {
			return 0, err
		}
		e.Prev = prev[0]
	}
	e.Time = e.Time.UTC()
	data, err := encode(e)
	if err != nil {
		return 0, err
	}
	hashes, err := tlog.StoredHashesForRecordHash(n, tlog.RecordHash(data), hr)
	if err != nil {
		return 0, fmt.Errorf("audit: computing tree hashes for entry %d: %w", n, err)
	}
	if err := r.Put(ctx, n, data, hashes); err != nil {
		return 0, fmt.Errorf("audit: storing entry %d: %w", n, err)
	}
	return n, nil
}

// encode validates e and returns its canonical bytes.
func encode(e Entry) ([]byte, error) {
	if err := validate(e); err != nil {
		return nil, err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding entry: %w", err)
	}
	if len(data) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d: shorten Details", ErrInvalidEntry, len(data), MaxEntrySize)
	}
	return data, nil
}

func validate(e Entry) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, args...))
	}
	if e.Actor == "" {
		return bad(`actor is required (use "anonymous" for a caller without credentials)`)
	}
	if e.Action == "" {
		return bad("action is required")
	}
	switch e.Outcome {
	case OutcomeOK, OutcomeDenied, OutcomeError:
	default:
		return bad("outcome %q is not one of ok, denied, error", e.Outcome)
	}
	if e.Time.Year() < 1 || e.Time.Year() > 9999 {
		return bad("time %v is outside years 1-9999", e.Time)
	}
	fields := []struct{ name, v string }{
		{"actor", e.Actor}, {"role", e.Role}, {"person", e.Person}, {"source", e.Source}, {"request_id", e.RequestID},
		{"client_request_id", e.ClientRequestID},
		{"action", e.Action}, {"target", e.Target}, {"outcome", e.Outcome},
	}
	for _, f := range fields {
		if err := checkText(f.v, MaxFieldLen); err != nil {
			return bad("%s: %v", f.name, err)
		}
	}
	if len(e.Details) > MaxDetails {
		return bad("%d details, limit %d", len(e.Details), MaxDetails)
	}
	for k, v := range e.Details {
		if k == "" {
			return bad("empty details key")
		}
		if err := checkText(k, MaxDetailKeyLen); err != nil {
			return bad("details key %.64q: %v", k, err)
		}
		if err := checkText(v, MaxFieldLen); err != nil {
			return bad("details[%q]: %v", k, err)
		}
	}
	return nil
}

// checkText rejects what encoding/json would silently alter (invalid UTF-8) and oversize text.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, limit %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

func checkOrigin(origin string) error {
	if origin == "" || len(origin) > 256 || !utf8.ValidString(origin) || strings.TrimSpace(origin) != origin {
		return fmt.Errorf("audit: invalid origin %q: want 1-256 bytes of UTF-8 without surrounding spaces", origin)
	}
	for _, r := range origin {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("audit: invalid origin %q: control characters are not allowed", origin)
		}
	}
	return nil
}
