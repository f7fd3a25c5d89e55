package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/audit"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := group("audit", "Read, export and verify the tamper-evident audit log")
	cmd.AddCommand(a.auditListCommand(), a.auditExportCommand(), a.auditCheckpointCommand(), a.auditVerifyCommand())
	return cmd
}

// auditQuery is a filter on the audit log, as flags.
type auditQuery struct {
	actor, action, target, since, until string
}

// path builds GET /api/v1/audit with the filter and a page start.
func (q auditQuery) path(base string, now time.Time, kv ...string) (string, error) {
	since, err := parseWhen(q.since, now)
	if err != nil {
		return "", usagef("--since: %v", err)
	}
	until, err := parseWhen(q.until, now)
	if err != nil {
		return "", usagef("--until: %v", err)
	}
	return query(base, append([]string{"actor", q.actor, "action", q.action, "target", q.target, "since", since, "until", until}, kv...)...), nil
}

// parseWhen accepts an RFC 3339 time, a date (2026-11-29, UTC) or a duration back from now
// (24h, 90m), and returns RFC 3339.
func parseWhen(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC().Format(time.RFC3339), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%q is not an RFC 3339 time, a date or a duration like 24h", s)
}

// listAudit follows the log's pages ("next") from index start until the end or until limit
// entries (0: all).
func listAudit(ctx context.Context, c *client, q auditQuery, now time.Time, start int64, limit int) ([]api.AuditEntry, error) {
	var out []api.AuditEntry
	for range maxPages {
		pageSize := audit.MaxListLimit
		if limit > 0 {
			pageSize = min(pageSize, limit-len(out))
		}
		path, err := q.path("/api/v1/audit", now, "start", strconv.FormatInt(start, 10), "limit", strconv.Itoa(pageSize))
		if err != nil {
			return nil, err
		}
		var page api.AuditEntries
		if err := c.do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Entries...)
		if page.Next == 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		if page.Next <= start {
			return nil, fmt.Errorf("the server's next page (%d) does not move past %d; stopping", page.Next, start)
		}
		start = page.Next
	}
	return nil, fmt.Errorf("more than %d pages of audit entries; narrow the filter", maxPages)
}

func auditRow(e api.AuditEntry) []string {
	return []string{strconv.FormatInt(e.Index, 10), e.Time.UTC().Format(time.RFC3339), e.Actor, e.Role, e.Action, e.Target, e.Outcome, e.RequestID}
}

var auditHeader = []string{"INDEX", "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "REQUEST"}

func (a *app) auditListCommand() *cobra.Command {
	var (
		q     auditQuery
		limit int
	)
	cmd := &cobra.Command{
		Use:   "list [--actor A] [--action device.*] [--target T] [--since 24h] [--until TIME] [--limit N]",
		Short: "List audit entries, oldest first",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must be 0 (all) or more")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			entries, err := listAudit(cmd.Context(), c, q, a.now(), 0, limit)
			if err != nil {
				return err
			}
			if entries == nil {
				entries = []api.AuditEntry{}
			}
			if a.output == "json" {
				return a.printJSON(api.AuditEntries{Entries: entries})
			}
			return tableOf(a.stdout, auditHeader, entries, auditRow)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&q.actor, "actor", "", "actor, like token:t_... or device:...")
	f.StringVar(&q.action, "action", "", "action, exact or a prefix ending in * (device.*)")
	f.StringVar(&q.target, "target", "", "target, like a device ID or policy name")
	f.StringVar(&q.since, "since", "", "from this time (RFC 3339, a date, or a duration back from now like 24h)")
	f.StringVar(&q.until, "until", "", "before this time (same forms)")
	f.IntVar(&limit, "limit", 0, "at most this many entries (0: all)")
	return cmd
}

func (a *app) auditExportCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Export the whole log as JSON Lines, exactly as stored and hashed",
		Long: `export writes every audit entry, one JSON object a line, as the server stored and hashed it:
what "audit verify --from-file" and an offline auditor check against a signed checkpoint.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.stream(cmd.Context(), "/api/v1/audit/export")
			if err != nil {
				return err
			}
			defer body.Close()
			if out == "" || out == "-" {
				_, err := io.Copy(a.stdout, body)
				return err
			}
			return writeFileFrom(out, body)
		}),
	}
	cmd.Flags().StringVarP(&out, "out", "f", "", "write to FILE instead of stdout")
	return cmd
}

// writeFileFrom writes r to path (mode 0600) and removes a partial file on failure.
func writeFileFrom(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func (a *app) auditCheckpointCommand() *cobra.Command {
	var save string
	cmd := &cobra.Command{
		Use:   "checkpoint [--save FILE]",
		Short: "Fetch a fresh signed checkpoint (tree size and hash) of the log",
		Long: `checkpoint asks the server to sign the log's current size and tree hash. Keep it (--save FILE):
"audit verify --checkpoint FILE" later proves that nothing it covers was changed since.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/audit/checkpoint", nil, &raw); err != nil {
				return err
			}
			var ans api.AuditCheckpoint
			if err := json.Unmarshal(raw, &ans); err != nil {
				return err
			}
			if save != "" {
				if err := os.WriteFile(save, []byte(ans.Checkpoint), 0o644); err != nil {
					return fmt.Errorf("saving the checkpoint: %w", err)
				}
				fmt.Fprintf(a.stderr, "checkpoint saved to %s\n", save)
			}
			return a.emit(raw, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s\nserver's verifier key: %s\n(verify with the key you keep, such as DATA/audit.pub, not with this one)\n",
					sanitizeNote(ans.Checkpoint), sanitize(ans.VerifierKey))
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&save, "save", "", "write the signed checkpoint to FILE")
	return cmd
}

// sanitizeNote keeps a checkpoint's lines but drops other control characters.
func sanitizeNote(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = sanitize(l)
	}
	return strings.Join(lines, "\n")
}

// loadVerifierKey takes a key file (like DATA/audit.pub) or the key itself.
func loadVerifierKey(s string) (note.Verifier, string, error) {
	key := s
	b, err := readFileLimited(s, 4<<10)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
	case !errors.Is(err, fs.ErrNotExist) && !strings.Contains(s, "+"):
		return nil, "", usagef("--key: %v", err)
	}
	v, err := audit.NewVerifier(key)
	if err != nil {
		return nil, "", usagef("--key is neither a readable key file nor a verifier key (name+hash+key): %v", err)
	}
	return v, key, nil
}

// verifyReport is what audit verify proved, for -o json.
type verifyReport struct {
	Key             string `json:"key"`
	Origin          string `json:"origin"`
	SavedSize       int64  `json:"saved_checkpoint_size"`
	ExportSource    string `json:"export_source"`
	ExportEntries   int64  `json:"export_entries"`
	LatestSize      int64  `json:"latest_checkpoint_size,omitempty"`
	ConsistencyLen  int    `json:"consistency_proof_hashes,omitempty"`
	Offline         bool   `json:"offline"`
	Verified        bool   `json:"verified"`
	FailedIndex     *int64 `json:"failed_index,omitempty"`
	FailedKind      string `json:"failed_kind,omitempty"`
	Failure         string `json:"failure,omitempty"`
	ServerKeyDiffer bool   `json:"server_key_differs,omitempty"`
}

func (a *app) auditVerifyCommand() *cobra.Command {
	var checkpointFile, keyArg, fromFile string
	cmd := &cobra.Command{
		Use:   "verify --checkpoint FILE --key KEYFILE|KEY [--from-file EXPORT]",
		Short: "Prove the log is unaltered since a checkpoint you saved",
		Long: `verify proves, with a verifier key you hold (DATA/audit.pub, never one taken from the server):
  1. the saved checkpoint is signed by that key;
  2. the server's latest checkpoint is signed by it too, and a consistency proof shows the latest
     tree extends the saved one (nothing covered was changed, removed or reordered);
  3. a full export of the log matches the saved checkpoint and the latest checkpoint, entry by
     entry (hash chain and Merkle tree).
With --from-file it verifies a saved export against the saved checkpoint only, offline.
A failure names the entry and how it failed, and exits with status 6.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if keyArg == "" {
				return usagef("--key is required: the verifier key you keep (DATA/audit.pub or the key itself); the server's own key proves nothing")
			}
			v, key, err := loadVerifierKey(keyArg)
			if err != nil {
				return err
			}
			saved, err := readFileLimited(checkpointFile, audit.MaxCheckpointSize)
			if err != nil {
				return fmt.Errorf("--checkpoint: %w", err)
			}
			rep := &verifyReport{Key: v.Name() + "+" + fmt.Sprintf("%08x", v.KeyHash())}
			err = a.verifyAudit(cmd.Context(), rep, v, key, saved, fromFile)
			if err != nil {
				rep.Failure = err.Error()
				var ve *audit.VerifyError
				if errors.As(err, &ve) {
					rep.FailedIndex, rep.FailedKind = &ve.Index, ve.Kind
				}
			}
			rep.Verified = err == nil
			if a.output == "json" {
				if perr := a.printJSON(rep); perr != nil {
					return perr
				}
			}
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&checkpointFile, "checkpoint", "", "the signed checkpoint you saved (audit checkpoint --save)")
	f.StringVar(&keyArg, "key", "", "verifier key file (DATA/audit.pub) or the key itself")
	f.StringVar(&fromFile, "from-file", "", "verify this export (audit export --out) offline instead of downloading one")
	_ = cmd.MarkFlagRequired("checkpoint")
	return cmd
}

// verifyAudit does the proving; it prints each step proved (in table mode) as it goes.
func (a *app) verifyAudit(ctx context.Context, rep *verifyReport, v note.Verifier, key string, saved []byte, fromFile string) error {
	say := func(format string, args ...any) {
		if a.output != "json" {
			fmt.Fprintf(a.stdout, format+"\n", args...)
		}
	}
	savedCp, err := audit.OpenCheckpoint(saved, v)
	if err != nil {
		return verifyError{fmt.Errorf("the saved checkpoint: %w", err)}
	}
	rep.Origin, rep.SavedSize = savedCp.Origin, savedCp.N
	say("key %s: saved checkpoint signature valid (%q, %d entries)", rep.Key, savedCp.Origin, savedCp.N)

	if fromFile != "" {
		rep.Offline, rep.ExportSource = true, fromFile
		f, err := os.Open(fromFile)
		if err != nil {
			return err
		}
		defer f.Close()
		in := &errReader{r: f}
		res, err := audit.VerifyExport(in, saved, v)
		rep.ExportEntries = res.Entries
		if in.err != nil {
			return fmt.Errorf("reading %s: %w", fromFile, in.err)
		}
		if err != nil {
			return verifyError{err}
		}
		say("export %s: %d entries", fromFile, res.Entries)
		say("proved: entries 0..%d are unchanged since the saved checkpoint", savedCp.N-1)
		if res.Entries > savedCp.N {
			say("not proved: entries %d..%d are checked for order and hash chaining only (newer than the checkpoint)", savedCp.N, res.Entries-1)
		}
		say("offline: the server's latest checkpoint was not consulted")
		return nil
	}

	c, err := a.client()
	if err != nil {
		return err
	}
	// The latest checkpoint first, then the export: the export then holds at least every
	// entry the checkpoint covers, so both checkpoints are checked against one download.
	var latestAns api.AuditCheckpoint
	if err := c.do(ctx, http.MethodGet, "/api/v1/audit/checkpoint", nil, &latestAns); err != nil {
		return err
	}
	latest := []byte(latestAns.Checkpoint)
	latestCp, err := audit.OpenCheckpoint(latest, v)
	if err != nil {
		return verifyError{fmt.Errorf("the server's latest checkpoint is not signed by your key: %w", err)}
	}
	rep.LatestSize = latestCp.N
	if strings.TrimSpace(latestAns.VerifierKey) != key {
		rep.ServerKeyDiffer = true
		say("note: the server reports a different verifier key than yours; yours was used")
	}
	say("latest checkpoint signature valid (%d entries)", latestCp.N)

	var proof tlog.TreeProof
	if savedCp.N > 0 && savedCp.N < latestCp.N {
		var ans api.AuditConsistencyProof
		path := query("/api/v1/audit/proof/consistency", "old", strconv.FormatInt(savedCp.N, 10), "new", strconv.FormatInt(latestCp.N, 10))
		if err := c.do(ctx, http.MethodGet, path, nil, &ans); err != nil {
			return err
		}
		if ans.OldSize != savedCp.N || ans.NewSize != latestCp.N {
			return verifyError{fmt.Errorf("the server sent a consistency proof from %d to %d, not %d to %d", ans.OldSize, ans.NewSize, savedCp.N, latestCp.N)}
		}
		proof = ans.Proof
	}
	if err := audit.VerifyConsistency(saved, latest, v, proof); err != nil {
		return verifyError{err}
	}
	rep.ConsistencyLen = len(proof)
	say("proved: the log of %d entries extends the saved checkpoint of %d (consistency proof of %d hashes)", latestCp.N, savedCp.N, len(proof))

	body, err := c.stream(ctx, "/api/v1/audit/export")
	if err != nil {
		return err
	}
	defer body.Close()
	rep.ExportSource = "server"
	results, err := verifyExportTwice(body, [2][]byte{saved, latest}, v)
	rep.ExportEntries = results[1].Entries
	if err != nil {
		return err
	}
	say("export from the server: %d entries", results[1].Entries)
	say("proved: entries 0..%d are unchanged since the saved checkpoint", savedCp.N-1)
	say("proved: entries 0..%d match the latest checkpoint", latestCp.N-1)
	if n := results[1].Entries; n > latestCp.N {
		say("not proved: entries %d..%d, appended after the latest checkpoint, are checked for order and hash chaining only", latestCp.N, n-1)
	}
	say("verified")
	return nil
}

// verifyExportTwice reads the export once and verifies it against both checkpoints at the same
// time, in constant memory.
func verifyExportTwice(r io.Reader, checkpoints [2][]byte, v note.Verifier) ([2]audit.Result, error) {
	var (
		results [2]audit.Result
		errs    [2]error
		pws     [2]*io.PipeWriter
		done    = make(chan int, 2)
	)
	for i := range 2 {
		pr, pw := io.Pipe()
		pws[i] = pw
		go func() {
			results[i], errs[i] = audit.VerifyExport(pr, checkpoints[i], v)
			// Keep reading, so the copy below is never blocked by a verifier that stopped.
			_, _ = io.Copy(io.Discard, pr)
			done <- i
		}()
	}
	_, copyErr := io.Copy(io.MultiWriter(pws[0], pws[1]), r)
	for _, pw := range pws {
		pw.CloseWithError(copyErr)
	}
	<-done
	<-done
	if copyErr != nil {
		return results, fmt.Errorf("downloading the export: %w", copyErr)
	}
	for i, what := range []string{"the saved checkpoint", "the latest checkpoint"} {
		if errs[i] != nil {
			return results, verifyError{fmt.Errorf("against %s: %w", what, errs[i])}
		}
	}
	return results, nil
}

// errReader remembers a read error, to tell a failed download or disk from a failed proof.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
