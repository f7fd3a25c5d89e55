package mdmserver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"

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

// recordForbidden puts a valid token's refused request on the audit record.
func (s *Server) recordForbidden(r *http.Request, t *tokens.Token) { s.auditor().RecordForbidden(r, t) }

// auditor records what admin requests did, on the audit log.
func (s *Server) auditor() httpapi.Auditor { return httpapi.Auditor{Log: s.audit, Logger: s.log} }
