package adminapi

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/coverage"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// Evidence serves what an auditor's evidence pack is made of beyond the audit log: the
// compliance coverage report, the server's configuration with secrets redacted, and the
// server's signature on the pack's manifest.
type Evidence struct {
	Devices   coverage.Devices
	Decisions coverage.Decisions
	// Config returns the configuration with every secret redacted.
	Config func() map[string]any
	// Signer signs the manifest with the audit log's key.
	Signer interface {
		SignStatement(text string) ([]byte, error)
	}
	VerifierKey string
	Auditor     httpapi.Auditor
	Log         *slog.Logger
	Now         func() time.Time
}

// Coverage is GET /api/v1/reports/coverage.
func (h *Evidence) Coverage(w http.ResponseWriter, r *http.Request) {
	rep, err := coverage.Compute(r.Context(), h.Devices, h.Decisions, h.now())
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rep)
}

// ServerConfig is GET /api/v1/config: the running configuration, secrets redacted.
func (h *Evidence) ServerConfig(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, h.Config())
}

// maxManifestFiles bounds a manifest; an evidence pack holds a few dozen files.
const maxManifestFiles = 10000

var (
	manifestName = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,3}$`)
	sha256Hex    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// SignManifest is POST /api/v1/evidence/manifest: the server signs the list of an evidence
// pack's files and their SHA-256 (as a note, with the audit log's key) and records the export
// in the audit log with the manifest's hash, so the pack's files can be shown unchanged since.
func (h *Evidence) SignManifest(w http.ResponseWriter, r *http.Request) {
	var req api.EvidenceManifestRequest
	if !problem.DecodeJSON(w, r, 1<<20, &req) {
		return
	}
	if len(req.Files) == 0 || len(req.Files) > maxManifestFiles {
		problem.BadRequest(w, r, fmt.Sprintf("files: give 1 to %d files", maxManifestFiles))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hale evidence manifest\n%s\n", h.now().UTC().Format(time.RFC3339))
	for i, f := range req.Files {
		if !manifestName.MatchString(f.Name) || strings.Contains(f.Name, "..") || !sha256Hex.MatchString(f.SHA256) || f.Size < 0 {
			problem.BadRequest(w, r, fmt.Sprintf("files[%d]: want a relative name of letters, digits, '.', '_', '-' and up to 3 '/', a lower-case hex SHA-256 and a size", i))
			return
		}
		fmt.Fprintf(&b, "%s %d %s\n", f.SHA256, f.Size, f.Name)
	}
	text := b.String()
	sum := sha256.Sum256([]byte(text))
	if err := h.Auditor.Record(r, httpapi.Event{Action: "evidence.export", Target: "manifest",
		Details: map[string]string{"files": fmt.Sprint(len(req.Files)), "manifest_sha256": hex.EncodeToString(sum[:])}}); err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	signed, err := h.Signer.SignStatement(text)
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.EvidenceManifest{Manifest: string(signed), VerifierKey: h.VerifierKey})
}

func (h *Evidence) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
