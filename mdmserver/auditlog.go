package mdmserver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// openAudit opens the audit log with its Ed25519 note key, made on first start and kept sealed
// in DATA/audit.key.sealed. The public verifier key is written to DATA/audit.pub for auditors to
// keep: verifying against a key taken from the server itself proves less.
func openAudit(cfg Config, key *seal.Key, st storage.Store, log *slog.Logger) (*audit.Log, string, error) {
	const purpose = "audit/note.key"
	path := cfg.path("audit.key.sealed")
	var skey string
	sealed, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var vkey string
		if skey, vkey, err = audit.GenerateKey("hale-audit"); err != nil {
			return nil, "", err
		}
		if err := writeFileAtomic(path, key.Seal(purpose, []byte(skey)), 0o600); err != nil {
			return nil, "", fmt.Errorf("write audit key: %w", err)
		}
		if err := writeFileAtomic(cfg.path("audit.pub"), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", err
		}
	case err != nil:
		return nil, "", fmt.Errorf("read audit key: %w", err)
	default:
		b, err := key.Open(purpose, sealed)
		if err != nil {
			return nil, "", fmt.Errorf("open audit key: %w", err)
		}
		skey = string(b)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		return nil, "", err
	}
	vkey, err := audit.VerifierKey(skey)
	if err != nil {
		return nil, "", err
	}
	l, err := audit.New(auditStore(st), signer, audit.WithLogger(log.With("component", "audit")))
	return l, vkey, err
}

// event is httpapi.Event, for the handlers still in this package.
type event = httpapi.Event

// record appends ev, done by the caller of r, to the audit log (httpapi.Auditor.Record).
func (s *Server) record(r *http.Request, ev event) error { return s.auditor().Record(r, ev) }

// recordForbidden puts a valid token's refused request on the audit record.
func (s *Server) recordForbidden(r *http.Request, t *tokens.Token) { s.auditor().RecordForbidden(r, t) }

func (s *Server) auditor() httpapi.Auditor { return httpapi.Auditor{Log: s.audit, Logger: s.log} }

// GET /api/v1/audit?actor=&action=&target=&since=&until=&start=&limit=
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	f, ok := auditFilter(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	start, _ := strconv.ParseInt(q.Get("start"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	entries, next, err := s.audit.List(r.Context(), f, start, limit)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"entries": entries, "next": next})
}

// GET /api/v1/audit/export: every matching entry as JSON Lines, exactly as stored and hashed.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) {
	f, ok := auditFilter(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	if err := s.audit.Export(r.Context(), w, f); err != nil {
		s.log.ErrorContext(r.Context(), "audit export failed mid-stream", "err", err)
	}
}

// GET /api/v1/audit/checkpoint: a fresh signed checkpoint and the key that verifies it.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.audit.Checkpoint(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"checkpoint": string(cp), "verifier_key": s.auditKey})
}

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

// GET /api/v1/audit/proof/inclusion?index=N&tree_size=M: proof that entry N is in the tree of M
// entries (default: the latest checkpoint's), with the entry's stored bytes.
func (s *Server) auditInclusionProof(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	index, err1 := strconv.ParseInt(q.Get("index"), 10, 64)
	size, err2 := parseOptionalInt(q.Get("tree_size"))
	if err1 != nil || err2 != nil {
		problem.BadRequest(w, r, "index (required) and tree_size must be integers")
		return
	}
	p, err := s.audit.InclusionProof(r.Context(), index, size)
	if s.proofError(w, r, err) {
		return
	}
	httpjson.Write(w, http.StatusOK, p)
}

// consistencyAnswer is the answer of GET /api/v1/audit/proof/consistency.
type consistencyAnswer struct {
	OldSize int64          `json:"old_size"`
	NewSize int64          `json:"new_size"`
	Proof   tlog.TreeProof `json:"proof"`
}

// GET /api/v1/audit/proof/consistency?old=N&new=M: proof that the tree of M entries extends the
// tree of N (default M: the latest checkpoint's size), so a saved checkpoint vouches for a newer one.
func (s *Server) auditConsistencyProof(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	oldSize, err1 := strconv.ParseInt(q.Get("old"), 10, 64)
	newSize, err2 := parseOptionalInt(q.Get("new"))
	if err1 != nil || err2 != nil {
		problem.BadRequest(w, r, "old (required) and new must be integers")
		return
	}
	if newSize == 0 {
		var err error
		if newSize, err = s.audit.LatestSize(r.Context()); s.proofError(w, r, err) {
			return
		}
	}
	p, err := s.audit.ConsistencyProof(r.Context(), oldSize, newSize)
	if s.proofError(w, r, err) {
		return
	}
	if p == nil {
		p = tlog.TreeProof{}
	}
	httpjson.Write(w, http.StatusOK, consistencyAnswer{OldSize: oldSize, NewSize: newSize, Proof: p})
}

// proofError answers a proof request's error, if any: 404 for what the log does not have yet.
func (s *Server) proofError(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, audit.ErrOutOfRange):
		problem.NotFound(w, r, err.Error())
	case errors.Is(err, audit.ErrNoCheckpoint):
		problem.NotFound(w, r, "no signed checkpoint yet: GET /api/v1/audit/checkpoint makes one")
	default:
		s.internal(w, r, err)
	}
	return true
}

func parseOptionalInt(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}
