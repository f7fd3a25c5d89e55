package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/text"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/posture"
)

// drillReason is the reason the drill's lock carries on the audit record.
const drillReason = "lost-device drill"

// Step outcomes.
const (
	stepPass    = "pass"
	stepFail    = "fail"
	stepSkipped = "skipped"
)

// drillStep is one step of the drill with its timing, outcome and evidence.
type drillStep struct {
	Name       string          `json:"name"`
	Title      string          `json:"title"`
	Result     string          `json:"result"`
	Start      time.Time       `json:"start"`
	End        time.Time       `json:"end"`
	DurationMS int64           `json:"duration_ms"`
	Detail     string          `json:"detail"`
	Evidence   []evidenceEntry `json:"evidence,omitempty"`
}

// evidenceEntry is an audit entry that proves a step, and whether its inclusion in the signed
// log was proved.
type evidenceEntry struct {
	Index   int64     `json:"index"`
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Actor   string    `json:"actor"`
	Outcome string    `json:"outcome"`
	Proved  bool      `json:"inclusion_proved"`
}

// drillReport is the whole drill, written as JSON and Markdown.
type drillReport struct {
	Device     string    `json:"device"`
	DeviceID   string    `json:"device_id,omitempty"`
	Platform   string    `json:"platform,omitempty"`
	Server     string    `json:"server"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Passed     bool      `json:"passed"`
	CommandID  string    `json:"command_id,omitempty"`
	// CommandResult is the lock command's final state and the result the device reported.
	CommandResult  *drillCommandResult `json:"command_result,omitempty"`
	AccessBefore   *accessBefore       `json:"access_before,omitempty"`
	AccessReasons  []string            `json:"access_reasons,omitempty"`
	AuditStart     int64               `json:"audit_log_size_at_start"`
	CheckpointSize int64               `json:"checkpoint_size,omitempty"`
	CheckpointKey  string              `json:"checkpoint_key,omitempty"`
	KeyPinned      bool                `json:"checkpoint_key_pinned"`
	Steps          []*drillStep        `json:"steps"`
}

// drillCommandResult is a command's final state with the result its device reported (the
// device wrote Detail and Paths: they are shown escaped).
type drillCommandResult struct {
	State  string           `json:"state"`
	Status string           `json:"status,omitempty"`
	Detail string           `json:"detail,omitempty"`
	Paths  []api.PathResult `json:"paths,omitempty"`
}

// accessBefore is the device's access decision before the drill locked it.
type accessBefore struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons,omitempty"`
}

func (a *app) drillCommand() *cobra.Command {
	var (
		reportDir, keyArg string
		timeout           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drill DEVICE [--report-dir DIR] [--timeout 2m] [--key KEYFILE]",
		Short: "Run the lost-device drill on a test device and write a report (security)",
		Long: `drill runs the lost-device procedure on a TEST device and proves each step. The device must be
active and already evaluated (checked in or reported once), so that there is access to revoke.
  1. lock: POST a lock with reason "lost-device drill";
  2. acknowledged: the device acknowledges the lock command (error or expiry fails);
  3. access denied: the access API answers allow:false for the device (reason codes recorded);
  4. revocation: an access.revoked audit entry (the revocation event) appears after the start;
  5. audit proof: the device.lock, command.result and access.revoked entries are each proved
     included in the log by an inclusion proof against a signed checkpoint, verified with --key
     (without --key the server's key is used and the report says the key was not pinned).
It writes drill-<device>-<UTC time>.md and .json into --report-dir, pass or fail, and exits 6 if
any step failed. --timeout bounds each wait (the acknowledgment, the revocation entry).`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			var v note.Verifier
			if keyArg != "" {
				var err error
				if v, _, err = loadVerifierKey(keyArg); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d := &drill{a: a, c: c, id: args[0], timeout: timeout, key: v,
				rep: &drillReport{Device: args[0], Server: c.base}}
			d.run(cmd.Context())
			paths, werr := d.write(reportDir)
			if a.output == "json" {
				if err := a.printJSON(d.rep); err != nil {
					return err
				}
			} else {
				d.summary(paths)
			}
			if werr != nil {
				return fmt.Errorf("writing the drill report: %w", werr)
			}
			if !d.rep.Passed {
				for _, s := range d.rep.Steps {
					if s.Result == stepFail {
						return verifyError{fmt.Errorf("drill failed at step %s: %s", s.Name, s.Detail)}
					}
				}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&reportDir, "report-dir", ".", "directory for the .md and .json reports")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the acknowledgment and for the revocation entry")
	f.StringVar(&keyArg, "key", "", "audit verifier key file (DATA/audit.pub) or the key itself")
	return cmd
}

// drill is one run of the drill.
type drill struct {
	a       *app
	c       *client
	id      string
	timeout time.Duration
	key     note.Verifier // nil: not pinned
	// serverKey is the key the server reports, used only when none is pinned.
	serverKey note.Verifier
	// deviceID and platform are the device's Hale ID (id may be a UDID) and platform.
	deviceID, platform string
	rep                *drillReport
}

func (d *drill) run(ctx context.Context) {
	d.rep.StartedAt = d.a.now().UTC()
	steps := []struct {
		name, title string
		fn          func(context.Context, *drillStep) error
	}{
		{"lock", "Lock the device", d.lock},
		{"acknowledged", "The device acknowledges the lock", d.acknowledged},
		{"access-denied", "The access API denies the device", d.accessDenied},
		{"revocation", "A revocation event went out (access.revoked)", d.revocation},
		{"audit-proof", "Audit entries proved included in the signed log", d.auditProof},
	}
	failedLock := false
	for _, st := range steps {
		s := &drillStep{Name: st.name, Title: st.title, Start: d.a.now().UTC()}
		d.rep.Steps = append(d.rep.Steps, s)
		if failedLock {
			s.Result, s.Detail, s.End = stepSkipped, "the lock was not sent", s.Start
			continue
		}
		err := st.fn(ctx, s)
		s.End = d.a.now().UTC()
		s.DurationMS = s.End.Sub(s.Start).Milliseconds()
		if err != nil {
			s.Result, s.Detail = stepFail, err.Error()
			failedLock = st.name == "lock"
		} else {
			s.Result = stepPass
		}
	}
	d.rep.FinishedAt = d.a.now().UTC()
	d.rep.Passed = !slices.ContainsFunc(d.rep.Steps, func(s *drillStep) bool { return s.Result != stepPass })
}

// step returns the step named name.
func (d *drill) step(name string) *drillStep {
	for _, s := range d.rep.Steps {
		if s.Name == name {
			return s
		}
	}
	return &drillStep{}
}

// lock notes where the audit log stands, then locks the device.
func (d *drill) lock(ctx context.Context, s *drillStep) error {
	// The audit log names a device by its Hale ID; the user may have given a UDID.
	var dev api.Device
	if err := d.c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s", d.id), nil, &dev); err != nil {
		return err
	}
	d.deviceID, d.platform = dev.ID, dev.Platform
	d.rep.DeviceID, d.rep.Platform = dev.ID, dev.Platform
	if dev.State != "active" {
		// A lock does not change a locked or lost device's state, so no revocation would go out.
		return fmt.Errorf("device %s is %s: run the drill on an active test device", dev.ID, dev.State)
	}
	// A device the server has not evaluated yet has no decision to revoke: its first decision
	// would be the locked one, and no revocation event goes out for it.
	var before posture.Decision
	if err := d.c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s/access", d.deviceID), nil, &before); err != nil {
		return err
	}
	d.rep.AccessBefore = &accessBefore{Allow: before.Allow}
	for _, r := range before.Reasons {
		d.rep.AccessBefore.Reasons = append(d.rep.AccessBefore.Reasons, r.Code)
	}
	if slices.Contains(d.rep.AccessBefore.Reasons, "unknown_device") {
		return fmt.Errorf("the access API has no decision for device %s yet (unknown_device): let it check in or report once, then run the drill", dev.ID)
	}
	size, _, err := d.checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("reading the audit log's size before the drill: %w", err)
	}
	d.rep.AuditStart = size
	var ans api.SecurityAnswer
	err = d.c.send(ctx, call{
		method: http.MethodPost, path: pathf("/api/v1/devices/%s/lock", d.id),
		body: api.SecurityRequest{Reason: drillReason}, header: http.Header{"Idempotency-Key": {newIdempotencyKey()}},
	}, &ans)
	if err != nil {
		return err
	}
	if ans.CommandID == "" {
		return fmt.Errorf("the server accepted the lock but named no command (state %q)", ans.State)
	}
	d.rep.CommandID = ans.CommandID
	s.Detail = fmt.Sprintf("command %s queued (state %s); device state %s; access before the lock: allow:%v %s",
		ans.CommandID, ans.State, ans.DeviceState, before.Allow, strings.Join(d.rep.AccessBefore.Reasons, ","))
	return nil
}

// Final command states, shared by Apple (commands.Record) and agent (agentcmd.Command) commands.
var commandFailed = []string{"error", "expired", "partial", "cancelled"}

func (d *drill) acknowledged(ctx context.Context, s *drillStep) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	last := ""
	for {
		var cmd command
		err := d.c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s/commands/%s", d.id, d.rep.CommandID), nil, &cmd)
		var ae *apiError
		switch {
		case errors.As(err, &ae):
			return err // the server said no: waiting will not change it
		case err == nil && (cmd.State == "acknowledged" || slices.Contains(commandFailed, cmd.State)):
			d.rep.CommandResult = &drillCommandResult{State: cmd.State}
			detail := ""
			if cmd.Result != nil {
				d.rep.CommandResult.Status, d.rep.CommandResult.Detail, d.rep.CommandResult.Paths = cmd.Result.Status, cmd.Result.Detail, cmd.Result.Paths
				if cmd.Result.Detail != "" {
					detail = ": " + cmd.Result.Detail
				}
			}
			if cmd.State != "acknowledged" {
				return fmt.Errorf("command %s ended %s%s", d.rep.CommandID, cmd.State, detail)
			}
			s.Detail = fmt.Sprintf("command %s is %s%s", d.rep.CommandID, cmd.State, detail)
			return nil
		case err == nil:
			last = cmd.State
		}
		if !d.sleep(ctx) {
			return fmt.Errorf("no acknowledgment within %s (last state %q)", d.timeout, last)
		}
	}
}

func (d *drill) accessDenied(ctx context.Context, s *drillStep) error {
	var ans posture.Decision
	if err := d.c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s/access", d.deviceID), nil, &ans); err != nil {
		return err
	}
	for _, r := range ans.Reasons {
		d.rep.AccessReasons = append(d.rep.AccessReasons, r.Code)
	}
	if ans.Allow {
		return errors.New("the access API still allows the device")
	}
	s.Detail = "allow:false, reasons " + strings.Join(d.rep.AccessReasons, ", ")
	return nil
}

// revocation waits for an access.revoked entry for the device appended since the drill began.
func (d *drill) revocation(ctx context.Context, s *drillStep) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for {
		entries, err := d.entries(ctx, "access.revoked")
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if len(entries) > 0 {
			s.Evidence = evidence(entries)
			e := entries[0]
			// The server counts the event streams that carry the revocation; with none, no
			// messaging backend heard of it, and the procedure has a hole to fix.
			if e.Details["streams"] == "0" {
				return fmt.Errorf("access.revoked at entry %d went to no event stream: no backend was told (create one: mdmctl events create)", e.Index)
			}
			s.Detail = fmt.Sprintf("access.revoked at entry %d (%s), sent on %s event stream(s)", e.Index, ts(e.Time), e.Details["streams"])
			return nil
		}
		if !d.sleep(ctx) {
			return fmt.Errorf("no access.revoked audit entry for the device within %s", d.timeout)
		}
	}
}

// auditProof collects the drill's audit entries and proves each included in a fresh signed
// checkpoint.
func (d *drill) auditProof(ctx context.Context, s *drillStep) error {
	wanted := []string{"device.lock", "access.revoked"}
	if d.step("acknowledged").Result == stepPass {
		wanted = append(wanted, "command.result")
	}
	var entries []api.AuditEntry
	wctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for {
		var err error
		if entries, err = d.entries(wctx, "device.lock", "command.result", "access.revoked"); err != nil {
			return err
		}
		missing := missingActions(entries, wanted)
		if len(missing) == 0 {
			break
		}
		if !d.sleep(wctx) {
			return fmt.Errorf("no %s audit entry for the device since the drill began", strings.Join(missing, ", "))
		}
	}

	size, signed, err := d.checkpoint(ctx)
	if err != nil {
		return err
	}
	d.rep.CheckpointSize = size
	proved := 0
	for i := range entries {
		e := &entries[i]
		var p api.AuditInclusionProof
		path := query("/api/v1/audit/proof/inclusion", "index", strconv.FormatInt(e.Index, 10), "tree_size", strconv.FormatInt(size, 10))
		if err := d.c.do(ctx, http.MethodGet, path, nil, &p); err != nil {
			return fmt.Errorf("inclusion proof of entry %d: %w", e.Index, err)
		}
		// The wire type and the verifier's have the same fields.
		got, err := audit.VerifyInclusion(signed, d.verifier(), (*audit.InclusionProof)(&p))
		if err != nil {
			return fmt.Errorf("entry %d (%s): %w", e.Index, e.Action, err)
		}
		if got.Index != e.Index || got.Action != e.Action || got.Target != e.Target || !got.Time.Equal(e.Time) {
			return fmt.Errorf("entry %d: the proved entry (%s %s) is not the one listed (%s %s)", e.Index, got.Action, got.Target, e.Action, e.Target)
		}
		proved++
	}
	s.Evidence = evidence(entries)
	for i := range s.Evidence {
		s.Evidence[i].Proved = true
	}
	// Each earlier step cites the entries that prove it.
	for name, action := range map[string]string{"lock": "device.lock", "acknowledged": "command.result", "revocation": "access.revoked"} {
		st := d.step(name)
		st.Evidence = nil
		for _, ev := range s.Evidence {
			if ev.Action == action {
				st.Evidence = append(st.Evidence, ev)
			}
		}
	}
	pinned := "with your key"
	if d.key == nil {
		pinned = "with the server's key: checkpoint key not pinned (pass --key DATA/audit.pub)"
	}
	s.Detail = fmt.Sprintf("%d entries proved included in the signed checkpoint of %d entries, %s", proved, size, pinned)
	return nil
}

// checkpoint fetches a fresh signed checkpoint and opens it with the pinned key, or with the
// server's when none is pinned (recorded in the report).
func (d *drill) checkpoint(ctx context.Context) (int64, []byte, error) {
	var ans api.AuditCheckpoint
	if err := d.c.do(ctx, http.MethodGet, "/api/v1/audit/checkpoint", nil, &ans); err != nil {
		return 0, nil, err
	}
	if d.key == nil {
		v, err := audit.NewVerifier(ans.VerifierKey)
		if err != nil {
			return 0, nil, err
		}
		d.serverKey = v
	}
	cp, err := audit.OpenCheckpoint([]byte(ans.Checkpoint), d.verifier())
	if err != nil {
		return 0, nil, err
	}
	d.rep.KeyPinned = d.key != nil
	d.rep.CheckpointKey = fmt.Sprintf("%s+%08x", d.verifier().Name(), d.verifier().KeyHash())
	return cp.N, []byte(ans.Checkpoint), nil
}

func (d *drill) verifier() note.Verifier {
	if d.key != nil {
		return d.key
	}
	return d.serverKey
}

// entries lists the device's audit entries with one of actions appended since the drill began.
func (d *drill) entries(ctx context.Context, actions ...string) ([]api.AuditEntry, error) {
	all, err := listAudit(ctx, d.c, auditQuery{target: d.deviceID}, d.a.now(), d.rep.AuditStart, 0)
	if err != nil {
		return nil, err
	}
	var out []api.AuditEntry
	for _, e := range all {
		if e.Index >= d.rep.AuditStart && slices.Contains(actions, e.Action) {
			if (e.Action == "device.lock" || e.Action == "command.result") && e.Details["command_id"] != d.rep.CommandID {
				continue // another command of the same device, not the drill's lock
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func missingActions(entries []api.AuditEntry, wanted []string) []string {
	var missing []string
	for _, w := range wanted {
		if !slices.ContainsFunc(entries, func(e api.AuditEntry) bool { return e.Action == w }) {
			missing = append(missing, w)
		}
	}
	return missing
}

func evidence(entries []api.AuditEntry) []evidenceEntry {
	out := make([]evidenceEntry, len(entries))
	for i, e := range entries {
		out[i] = evidenceEntry{Index: e.Index, Time: e.Time, Action: e.Action, Actor: e.Actor, Outcome: e.Outcome}
	}
	return out
}

// sleep waits one poll interval; false when ctx ended first.
func (d *drill) sleep(ctx context.Context) bool {
	t := time.NewTimer(d.a.pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// write writes the .json and .md reports and returns their paths.
func (d *drill) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("drill-%s-%s", unsafeName.ReplaceAllString(d.id, "_"), d.rep.StartedAt.Format("20060102T150405Z"))
	j, err := json.MarshalIndent(d.rep, "", "  ")
	if err != nil {
		return nil, err
	}
	paths := []string{filepath.Join(dir, base+".md"), filepath.Join(dir, base+".json")}
	if err := os.WriteFile(paths[0], d.markdown(), 0o644); err != nil {
		return nil, err
	}
	// The JSON keeps every value exactly, with control and format characters as \u escapes.
	if err := os.WriteFile(paths[1], append(text.JSON(j), '\n'), 0o644); err != nil {
		return nil, err
	}
	return paths, nil
}

// markdown renders the report. Every value that a device, a user or the server supplied goes
// through text.MarkdownCode or text.MarkdownCell, so it shows as written and renders as nothing
// else: no image, link, HTML, table break or bidi reordering.
func (d *drill) markdown() []byte {
	r := d.rep
	var b bytes.Buffer
	result := "PASS"
	if !r.Passed {
		result = "FAIL"
	}
	fmt.Fprintf(&b, "# Lost-device drill: %s\n\n", text.MarkdownCode(r.Device))
	if r.DeviceID != "" {
		fmt.Fprintf(&b, "- Device: %s (%s)\n", text.MarkdownCode(r.DeviceID), text.MarkdownCode(r.Platform))
	}
	fmt.Fprintf(&b, "- Result: **%s**\n- Server: %s\n- Started: %s\n- Finished: %s (%s)\n", result, text.MarkdownCode(r.Server),
		r.StartedAt.Format(time.RFC3339Nano), r.FinishedAt.Format(time.RFC3339Nano), r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	if r.CommandID != "" {
		fmt.Fprintf(&b, "- Lock command: %s\n", text.MarkdownCode(r.CommandID))
	}
	fmt.Fprintf(&b, "- Audit log size at start: %d\n", r.AuditStart)
	if r.CheckpointSize > 0 {
		pinned := "pinned (given with --key)"
		if !r.KeyPinned {
			pinned = "**not pinned**: the server's own key was used"
		}
		fmt.Fprintf(&b, "- Checkpoint: %d entries, key %s, %s\n", r.CheckpointSize, text.MarkdownCode(r.CheckpointKey), pinned)
	}
	b.WriteString("\n## Steps\n\n| # | Step | Result | Start | End | Duration | Detail |\n|---|---|---|---|---|---|---|\n")
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %d ms | %s |\n", i+1, s.Title, strings.ToUpper(s.Result),
			s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano), s.DurationMS, text.MarkdownCell(s.Detail))
	}
	if cr := r.CommandResult; cr != nil {
		fmt.Fprintf(&b, "\n## Command result\n\n- State: %s\n- Status: %s\n- Detail (as the device reported it): %s\n",
			text.MarkdownCode(cr.State), text.MarkdownCode(cr.Status), text.MarkdownCode(cr.Detail))
		if len(cr.Paths) > 0 {
			b.WriteString("\n| Path | Outcome | Reason |\n|---|---|---|\n")
			for _, p := range cr.Paths {
				fmt.Fprintf(&b, "| %s | %s | %s |\n", text.MarkdownCell(p.Path), text.MarkdownCell(p.Outcome), text.MarkdownCell(p.Reason))
			}
		}
	}
	b.WriteString("\n## Audit evidence\n")
	for i, s := range r.Steps {
		if len(s.Evidence) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### %d. %s\n\n| Index | Time | Action | Actor | Outcome | Inclusion proved |\n|---|---|---|---|---|---|\n", i+1, s.Title)
		for _, e := range s.Evidence {
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", e.Index, e.Time.Format(time.RFC3339Nano),
				text.MarkdownCell(e.Action), text.MarkdownCell(e.Actor), text.MarkdownCell(e.Outcome), yesNo(e.Proved))
		}
	}
	return b.Bytes()
}

func (d *drill) summary(paths []string) {
	rows := make([][]string, 0, len(d.rep.Steps))
	for i, s := range d.rep.Steps {
		rows = append(rows, []string{strconv.Itoa(i + 1), s.Name, strings.ToUpper(s.Result), (time.Duration(s.DurationMS) * time.Millisecond).String(), s.Detail})
	}
	_ = table(d.a.stdout, []string{"#", "STEP", "RESULT", "TOOK", "DETAIL"}, rows)
	result := "PASSED"
	if !d.rep.Passed {
		result = "FAILED"
	}
	fmt.Fprintf(d.a.stdout, "drill %s; report: %s\n", result, strings.Join(paths, ", "))
}
