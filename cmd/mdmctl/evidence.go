package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/mdmserver/audit"
)

// evidencePack is one run of `mdmctl evidence`: what it collects and where.
type evidencePack struct {
	a        *app
	c        *client
	dir      string
	key      note.Verifier
	keyText  string
	keyFrom  string
	saved    []byte // the auditor's own earlier checkpoint, or nil
	drills   string
	now      time.Time
	entries  []audit.Entry // the export, parsed, for the histories
	failures []string      // what did not verify; the pack is written anyway
}

func (a *app) evidenceCommand() *cobra.Command {
	var out, keyArg, checkpointFile, drills string
	cmd := &cobra.Command{
		Use:   "evidence --out DIR --key KEYFILE [--checkpoint FILE] [--drill-reports DIR]",
		Short: "Write an evidence pack for an auditor (auditor)",
		Long: `evidence writes into DIR (which must not exist) what an auditor asks for about HIPAA 164.312:
  audit/       the audit log export, the checkpoint, and the verification transcript: the export
               checked entry by entry against the server's signed checkpoint with the key you
               pinned (--key, DATA/audit.pub kept apart from the server), and against your own
               earlier checkpoint (--checkpoint) when given
  coverage/    compliance coverage per platform and group (CSV, Markdown, JSON)
  policies/    the policies in force (their documents and assignments) and their change
               history from the audit log
  access/      the API tokens: name, role, person, created, expiry, revocation and last audited
               use (never a secret); break-glass uses, and those still unreviewed after a day
  drills/      the lost-device drill reports found in --drill-reports from the last year
  server/      the server's configuration, secrets redacted
  MANIFEST     every file's SHA-256, signed by the server with the audit log's key and
               verified with yours; the export is on the audit record (evidence.export)
Anything that does not verify is written down in audit/verification.txt, the pack is still
written, and the command exits with status 6.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if out == "" || keyArg == "" {
				return usagef("--out DIR and --key KEYFILE are required: the key is the audit.pub you keep, not the server's")
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s exists; evidence writes a new directory", out)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			v, key, err := loadVerifierKey(keyArg)
			if err != nil {
				return err
			}
			e := &evidencePack{a: a, dir: out, key: v, keyText: key, keyFrom: keyArg, drills: drills, now: time.Now().UTC()}
			if checkpointFile != "" {
				if e.saved, err = readFileLimited(checkpointFile, audit.MaxCheckpointSize); err != nil {
					return fmt.Errorf("--checkpoint: %w", err)
				}
			}
			if e.c, err = a.client(); err != nil {
				return err
			}
			if err := os.Mkdir(out, 0o700); err != nil {
				return err
			}
			if err := e.collect(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "evidence pack written to %s\n", out)
			if len(e.failures) > 0 {
				return verifyError{fmt.Errorf("not verified: %s", strings.Join(e.failures, "; "))}
			}
			fmt.Fprintln(a.stdout, "audit log and manifest verified with your key")
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "f", "", "the directory to write (must not exist)")
	f.StringVar(&keyArg, "key", "", "audit verifier key file (DATA/audit.pub, kept apart) or the key itself")
	f.StringVar(&checkpointFile, "checkpoint", "", "a checkpoint you saved earlier (audit checkpoint --save), to prove nothing changed since")
	f.StringVar(&drills, "drill-reports", "", "directory of drill reports (drill --report-dir) to include")
	return cmd
}

// collect writes every part of the pack, then the signed manifest.
func (e *evidencePack) collect(ctx context.Context) error {
	for _, part := range []func(context.Context) error{e.audit, e.coverage, e.policies, e.tokens, e.breakGlass, e.copyDrills, e.config} {
		if err := part(ctx); err != nil {
			return err
		}
	}
	if err := e.write("README.md", []byte(e.readme())); err != nil {
		return err
	}
	return e.manifest(ctx)
}

// write writes one file of the pack (mode 0600), making its directory.
func (e *evidencePack) write(name string, b []byte) error {
	p := filepath.Join(e.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o600)
}

// getJSON fetches path into out and writes the answer, indented, as name.
func (e *evidencePack) getJSON(ctx context.Context, path, name string, out any) error {
	if err := e.c.do(ctx, http.MethodGet, path, nil, out); err != nil {
		return err
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return e.write(name, append(b, '\n'))
}

// audit downloads the checkpoint and the export and verifies the one against the other (and
// against the auditor's saved checkpoint) with the pinned key, writing the transcript.
func (e *evidencePack) audit(ctx context.Context) error {
	var cp api.AuditCheckpoint
	if err := e.c.do(ctx, http.MethodGet, "/api/v1/audit/checkpoint", nil, &cp); err != nil {
		return err
	}
	if err := e.write("audit/checkpoint.txt", []byte(cp.Checkpoint)); err != nil {
		return err
	}
	body, err := e.c.stream(ctx, "/api/v1/audit/export")
	if err != nil {
		return err
	}
	export, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		return err
	}
	if err := e.write("audit/audit.jsonl", export); err != nil {
		return err
	}
	for _, line := range bytes.Split(bytes.TrimSpace(export), []byte("\n")) {
		var en audit.Entry
		if json.Unmarshal(line, &en) == nil {
			e.entries = append(e.entries, en)
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Hale audit log verification, %s, by mdmctl %s\n", e.now.Format(time.RFC3339), buildinfo.String())
	fmt.Fprintf(&t, "verifier key: %s+%08x (pinned: %s)\n\n", e.key.Name(), e.key.KeyHash(), e.keyFrom)
	if strings.TrimSpace(cp.VerifierKey) != e.keyText {
		fmt.Fprintln(&t, "note: the server reports a different verifier key than the pinned one; the pinned one was used")
	}
	check := func(what string, checkpoint []byte) {
		c, err := audit.OpenCheckpoint(checkpoint, e.key)
		if err != nil {
			e.fail(&t, fmt.Sprintf("%s: not signed by the pinned key: %v", what, err))
			return
		}
		res, err := audit.VerifyExport(bytes.NewReader(export), checkpoint, e.key)
		if err != nil {
			e.fail(&t, fmt.Sprintf("%s: the export does not match it: %v", what, err))
			return
		}
		fmt.Fprintf(&t, "%s: signature valid (%q, %d entries)\n", what, c.Origin, c.N)
		fmt.Fprintf(&t, "proved: export entries 0..%d hash to it (hash chain and Merkle tree)\n", c.N-1)
		if res.Entries > c.N {
			fmt.Fprintf(&t, "not proved by it: entries %d..%d, newer, checked for order and hash chaining only\n", c.N, res.Entries-1)
		}
	}
	fmt.Fprintf(&t, "export: %d entries (audit/audit.jsonl)\n", len(e.entries))
	check("the server's checkpoint (audit/checkpoint.txt)", []byte(cp.Checkpoint))
	if e.saved != nil {
		check("your saved checkpoint", e.saved)
		if err := e.write("audit/saved-checkpoint.txt", e.saved); err != nil {
			return err
		}
	}
	if len(e.failures) == 0 {
		fmt.Fprintln(&t, "\nresult: VERIFIED")
	} else {
		fmt.Fprintln(&t, "\nresult: NOT VERIFIED")
	}
	return e.write("audit/verification.txt", []byte(t.String()))
}

// fail notes a verification failure in the transcript and for the exit status.
func (e *evidencePack) fail(t *strings.Builder, msg string) {
	fmt.Fprintln(t, "FAILED: "+msg)
	e.failures = append(e.failures, msg)
}

// coverage writes the compliance coverage report as JSON, CSV and Markdown.
func (e *evidencePack) coverage(ctx context.Context) error {
	var rep api.CoverageReport
	if err := e.getJSON(ctx, "/api/v1/reports/coverage", "coverage/coverage.json", &rep); err != nil {
		return err
	}
	cols := []string{"platform", "group", "devices", "encrypted", "passcode", "os_current", "not_jailbroken", "in_grace", "stale", "denied"}
	values := func(r api.CoverageRow) []int {
		return []int{r.Devices, r.Encrypted, r.Passcode, r.OSCurrent, r.NotJailbroken, r.InGrace, r.Stale, r.Denied}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(cols)
	var md strings.Builder
	fmt.Fprintf(&md, "# Compliance coverage, %s\n\nCounts of enrolled devices (active, locked, lost) whose latest report shows each safeguard; percentages of the row's devices.\n\n", rep.GeneratedAt.Format(time.RFC3339))
	fmt.Fprintf(&md, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat(" --- |", len(cols)))
	for _, r := range append(rep.Rows, rep.Total) {
		rec := []string{r.Platform, r.Group}
		cells := []string{r.Platform, r.Group}
		if r.Group == "" {
			cells[1] = "(none)"
		}
		for i, n := range values(r) {
			rec = append(rec, fmt.Sprint(n))
			if i == 0 || r.Devices == 0 {
				cells = append(cells, fmt.Sprint(n))
			} else {
				cells = append(cells, fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(r.Devices)))
			}
		}
		_ = w.Write(rec)
		fmt.Fprintf(&md, "| %s |\n", strings.Join(cells, " | "))
	}
	w.Flush()
	fmt.Fprintf(&md, "\n## Top reasons for denial\n\n| reason | devices |\n| --- | --- |\n")
	for _, rc := range rep.TopDenialReasons {
		fmt.Fprintf(&md, "| %s | %d |\n", rc.Code, rc.Devices)
	}
	if err := e.write("coverage/coverage.csv", buf.Bytes()); err != nil {
		return err
	}
	return e.write("coverage/coverage.md", []byte(md.String()))
}

// policies writes the policies in force, their assignments, and their history from the log.
func (e *evidencePack) policies(ctx context.Context) error {
	var list api.Policies
	if err := e.getJSON(ctx, "/api/v1/policies", "policies/policies.json", &list); err != nil {
		return err
	}
	for _, p := range list.Policies {
		var full api.Policy
		if err := e.c.do(ctx, http.MethodGet, pathf("/api/v1/policies/%s", p.Name), nil, &full); err != nil {
			return err
		}
		name := fmt.Sprintf("policies/%s.v%d.yaml", unsafeName.ReplaceAllString(p.Name, "_"), full.Version)
		if err := e.write(name, []byte(full.Source)); err != nil {
			return err
		}
	}
	return e.history("policies/history.csv", func(en audit.Entry) bool {
		return strings.HasPrefix(en.Action, "policy.") || strings.HasPrefix(en.Action, "assignment")
	})
}

// history writes the audit entries match selects as CSV.
func (e *evidencePack) history(name string, match func(audit.Entry) bool) error {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"index", "time", "actor", "person", "action", "target", "outcome", "details"})
	for _, en := range e.entries {
		if !match(en) {
			continue
		}
		var details []string
		for _, k := range slices.Sorted(maps.Keys(en.Details)) {
			details = append(details, k+"="+en.Details[k])
		}
		_ = w.Write([]string{fmt.Sprint(en.Index), en.Time.UTC().Format(time.RFC3339), en.Actor, en.Person, en.Action, en.Target, en.Outcome, strings.Join(details, " ")})
	}
	w.Flush()
	return e.write(name, buf.Bytes())
}

// tokens writes the API tokens with their last audited use, never a secret.
func (e *evidencePack) tokens(ctx context.Context) error {
	var list api.Tokens
	if err := e.c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, &list); err != nil {
		return err
	}
	lastUse := map[string]time.Time{}
	for _, en := range e.entries {
		if id, ok := strings.CutPrefix(en.Actor, "token:"); ok && en.Time.After(lastUse[id]) {
			lastUse[id] = en.Time
		}
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"id", "name", "role", "person", "state", "created_at", "created_by", "expires_at", "revoked_at", "last_audited_use"})
	for _, t := range list.Tokens {
		_ = w.Write([]string{t.ID, t.Name, t.Role, t.Person, t.State, stamp(t.CreatedAt), t.CreatedBy, stamp(t.ExpiresAt), stamp(t.RevokedAt), stamp(lastUse[t.ID])})
	}
	w.Flush()
	if err := e.write("access/tokens.csv", buf.Bytes()); err != nil {
		return err
	}
	return e.history("access/token-history.csv", func(en audit.Entry) bool { return strings.HasPrefix(en.Action, "token.") })
}

// breakGlass writes every emergency access use, and those still awaiting the security team's
// review a day after they began.
func (e *evidencePack) breakGlass(ctx context.Context) error {
	var list api.BreakGlassList
	if err := e.getJSON(ctx, "/api/v1/break-glass", "access/break-glass.json", &list); err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"id", "device_id", "person", "reason", "channel", "overrides", "started_at", "expires_at", "active"})
	for _, u := range list.Uses {
		if u.Review == nil && u.Overdue {
			_ = w.Write([]string{u.ID, u.DeviceID, u.Person, u.Reason, u.Channel, strings.Join(u.Overrides, " "),
				u.StartedAt.UTC().Format(time.RFC3339), u.ExpiresAt.UTC().Format(time.RFC3339), fmt.Sprint(u.Active)})
		}
	}
	w.Flush()
	return e.write("access/break-glass-unreviewed.csv", buf.Bytes())
}

// copyDrills copies the drill reports of the last year from --drill-reports.
func (e *evidencePack) copyDrills(context.Context) error {
	if e.drills == "" {
		return nil
	}
	matches, err := filepath.Glob(filepath.Join(e.drills, "drill-*"))
	if err != nil {
		return err
	}
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil || !fi.Mode().IsRegular() || e.now.Sub(fi.ModTime()) > 365*24*time.Hour ||
			(filepath.Ext(m) != ".md" && filepath.Ext(m) != ".json") {
			continue
		}
		b, err := readFileLimited(m, 16<<20)
		if err != nil {
			return err
		}
		if err := e.write("drills/"+unsafeName.ReplaceAllString(filepath.Base(m), "_"), b); err != nil {
			return err
		}
	}
	return nil
}

// config writes the server's configuration, secrets redacted.
func (e *evidencePack) config(ctx context.Context) error {
	var cfg map[string]any
	return e.getJSON(ctx, "/api/v1/config", "server/config.json", &cfg)
}

// manifest has the server sign the list of files, checks the signature with the pinned key and
// writes it as MANIFEST.
func (e *evidencePack) manifest(ctx context.Context) error {
	var req api.EvidenceManifestRequest
	err := filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(e.dir, p)
		sum := sha256.Sum256(b)
		req.Files = append(req.Files, api.EvidenceFile{Name: filepath.ToSlash(rel), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))})
		return nil
	})
	if err != nil {
		return err
	}
	var ans api.EvidenceManifest
	if err := e.c.do(ctx, http.MethodPost, "/api/v1/evidence/manifest", req, &ans); err != nil {
		return err
	}
	if _, err := note.Open([]byte(ans.Manifest), note.VerifierList(e.key)); err != nil {
		e.failures = append(e.failures, fmt.Sprintf("the manifest is not signed by the pinned key: %v", err))
	}
	return e.write("MANIFEST", []byte(ans.Manifest))
}

// readme describes the pack.
func (e *evidencePack) readme() string {
	return fmt.Sprintf(`# Hale evidence pack

Written %s by mdmctl %s, for HIPAA 164.312 (access control, audit controls, integrity,
transmission security) and 164.308(a)(1) (information system activity review).

- audit/audit.jsonl: the whole audit log, one entry a line, exactly as stored and hashed.
- audit/checkpoint.txt: the server's signed checkpoint at the time of the export.
- audit/verification.txt: the export checked against the checkpoint with the pinned key %s+%08x.
  Re-run it: mdmctl audit verify --checkpoint audit/checkpoint.txt --key audit.pub --from-file audit/audit.jsonl
- coverage/: compliance coverage per platform and group, and the top reasons for denial.
- policies/: the policies in force (one YAML per policy and version), their assignments, and every
  policy and assignment change from the audit log (history.csv).
- access/: the API tokens (no secrets) with their last audited use, and their history; every
  emergency access (break-glass) use, and those unreviewed a day after they began.
- drills/: lost-device drill reports.
- server/config.json: the server's configuration, secrets redacted.
- MANIFEST: every other file's SHA-256 and size, signed by the server with the audit log's key.
  Check a file: sha256sum FILE, and compare with its line. Check the signature with the same key.
`, e.now.Format(time.RFC3339), buildinfo.String(), e.key.Name(), e.key.KeyHash())
}
