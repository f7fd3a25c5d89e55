package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// openAudit opens the audit log with its Ed25519 note key, made on first start and kept sealed
// in DATA/audit.key.sealed. The public verifier key is written to DATA/audit.pub for auditors to
// keep: verifying against a key taken from the server itself proves less.
func openAudit(cfg Config, key *seal.Key, db *bbolt.DB, log *slog.Logger) (*audit.Log, string, error) {
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
	l, err := audit.New(db, signer, audit.WithLogger(log.With("component", "audit")))
	return l, vkey, err
}

// event describes one audited action.
type event struct {
	Action  string
	Target  string
	Outcome string // audit.OutcomeOK unless set
	Details map[string]string
}

// record appends ev to the audit log with the request's actor, role, source and request ID.
// A failure to audit is logged loudly; callers that must not act unaudited use it before acting.
func (s *Server) record(r *http.Request, ev event) error {
	e := audit.Entry{
		Actor: "anonymous", Source: r.RemoteAddr, RequestID: httpmw.RequestID(r.Context()),
		Action: ev.Action, Target: ev.Target, Outcome: ev.Outcome, Details: ev.Details,
	}
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeOK
	}
	if t := tokens.FromContext(r.Context()); t != nil {
		e.Actor, e.Role = "token:"+t.ID, string(t.Role)
		if e.Details == nil {
			e.Details = map[string]string{}
		}
		e.Details["token_name"] = t.Name
	} else if d := deviceFromContext(r.Context()); d != nil {
		e.Actor, e.Role = "device:"+d.ID, "device"
	}
	_, err := s.audit.Append(context.WithoutCancel(r.Context()), e)
	if err != nil {
		s.log.ErrorContext(r.Context(), "AUDIT APPEND FAILED", "action", ev.Action, "target", ev.Target, "err", err)
	}
	return err
}

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
