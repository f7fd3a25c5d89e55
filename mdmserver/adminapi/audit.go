package adminapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// AuditLog is the tamper-evident audit log as auditors read it (an *audit.Log).
type AuditLog interface {
	List(ctx context.Context, f audit.Filter, start int64, limit int) ([]audit.Entry, int64, error)
	Export(ctx context.Context, w io.Writer, f audit.Filter) error
	Checkpoint(ctx context.Context) ([]byte, error)
	LatestSize(ctx context.Context) (int64, error)
	InclusionProof(ctx context.Context, index, treeSize int64) (*audit.InclusionProof, error)
	ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error)
}

// Audit serves /api/v1/audit: the entries, their export, signed checkpoints and the proofs that
// let an auditor check the log against a checkpoint they kept.
type Audit struct {
	// Log is the audit log.
	Log AuditLog
	// VerifierKey is the note verifier key of the log's checkpoints, answered with each one.
	VerifierKey string
	// Logger receives internal errors.
	Logger *slog.Logger
}

// List is GET /api/v1/audit?actor=&action=&target=&since=&until=&start=&limit=: a page of entries.
func (h *Audit) List(w http.ResponseWriter, r *http.Request) {
	f, ok := auditFilter(w, r)
	if !ok {
		return
	}
	start, ok := httpapi.QueryInt(w, r, "start", 0)
	if !ok {
		return
	}
	limit, ok := httpapi.QueryInt(w, r, "limit", 1)
	if !ok {
		return
	}
	entries, next, err := h.Log.List(r.Context(), f, start, int(min(limit, 1<<20)))
	if err != nil {
		httpapi.Internal(h.Logger, w, r, err)
		return
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	// audit.Entry is the stored and hashed form; its JSON is api.AuditEntry's.
	httpjson.Write(w, http.StatusOK, map[string]any{"entries": entries, "next": next})
}

// Export is GET /api/v1/audit/export: every matching entry as JSON Lines, exactly as stored and
// hashed.
func (h *Audit) Export(w http.ResponseWriter, r *http.Request) {
	f, ok := auditFilter(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	if err := h.Log.Export(r.Context(), w, f); err != nil {
		h.Logger.ErrorContext(r.Context(), "audit export failed mid-stream", "err", err)
	}
}

// Checkpoint is GET /api/v1/audit/checkpoint: a fresh signed checkpoint and the key that
// verifies it.
func (h *Audit) Checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := h.Log.Checkpoint(r.Context())
	if err != nil {
		httpapi.Internal(h.Logger, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.AuditCheckpoint{Checkpoint: string(cp), VerifierKey: h.VerifierKey})
}

// InclusionProof is GET /api/v1/audit/proof/inclusion?index=N&tree_size=M: proof that entry N is
// in the tree of M entries (default: the latest checkpoint's), with the entry's stored bytes.
func (h *Audit) InclusionProof(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	index, err1 := strconv.ParseInt(q.Get("index"), 10, 64)
	size, err2 := parseOptionalInt(q.Get("tree_size"))
	if err1 != nil || err2 != nil {
		problem.BadRequest(w, r, "index (required) and tree_size must be integers")
		return
	}
	p, err := h.Log.InclusionProof(r.Context(), index, size)
	if h.proofError(w, r, err) {
		return
	}
	httpjson.Write(w, http.StatusOK, api.AuditInclusionProof{Index: p.Index, TreeSize: p.TreeSize, Entry: p.Entry,
		Proof: p.Proof, TreeHash: p.TreeHash})
}

// ConsistencyProof is GET /api/v1/audit/proof/consistency?old=N&new=M: proof that the tree of M
// entries extends the tree of N (default M: the latest checkpoint's size), so a saved checkpoint
// vouches for a newer one.
func (h *Audit) ConsistencyProof(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	oldSize, err1 := strconv.ParseInt(q.Get("old"), 10, 64)
	newSize, err2 := parseOptionalInt(q.Get("new"))
	if err1 != nil || err2 != nil {
		problem.BadRequest(w, r, "old (required) and new must be integers")
		return
	}
	if newSize == 0 {
		var err error
		if newSize, err = h.Log.LatestSize(r.Context()); h.proofError(w, r, err) {
			return
		}
	}
	p, err := h.Log.ConsistencyProof(r.Context(), oldSize, newSize)
	if h.proofError(w, r, err) {
		return
	}
	if p == nil {
		p = tlog.TreeProof{}
	}
	httpjson.Write(w, http.StatusOK, api.AuditConsistencyProof{OldSize: oldSize, NewSize: newSize, Proof: p})
}

// proofError answers a proof request's error, if any: 404 for what the log does not have yet.
func (h *Audit) proofError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, audit.ErrOutOfRange):
		problem.NotFound(w, r, err.Error())
	case errors.Is(err, audit.ErrNoCheckpoint):
		problem.NotFound(w, r, "no signed checkpoint yet: GET /api/v1/audit/checkpoint makes one")
	default:
		httpapi.Internal(h.Logger, w, r, err)
	}
	return true
}

// auditFilter reads the filter of an audit query; since and until are RFC 3339 times.
func auditFilter(w http.ResponseWriter, r *http.Request) (audit.Filter, bool) {
	q := r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target")}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				problem.BadRequest(w, r, name+" must be an RFC 3339 time")
				return f, false
			}
			*dst = t
		}
	}
	return f, true
}

func parseOptionalInt(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}
