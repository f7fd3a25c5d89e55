package compliance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

func TestIngestToIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good, bad, silent := e.device(t, "icu"), e.device(t, "icu"), e.device(t, "icu")

	// Before any policy: no_policy, denied.
	if a := e.index.Lookup(good.ID, t0); a.Allow {
		t.Fatalf("device without a policy allowed: %+v", a)
	}
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	if _, err := e.eng.ReevaluateAll(ctx); err != nil {
		t.Fatal(err)
	}

	v := e.report(t, good.ID, windows("10.0.22631", true, t0))
	if !v.Compliant || v.PolicyName != "clinical" || v.PolicyVersion != 1 {
		t.Fatalf("compliant report verdict = %+v", v)
	}
	if a := e.index.Lookup(good.ID, t0.Add(time.Minute)); !a.Allow || !a.Compliant || a.Posture == nil || a.Posture.DiskEncrypted.Source != policies.ProvenanceAgent {
		t.Fatalf("compliant device answer = %+v", a)
	}
	// The decision goes stale after the policy's max_age (48h) without another write.
	if a := e.index.Lookup(good.ID, t0.Add(49*time.Hour)); a.Allow || !slices.Contains(codes(a.Reasons), access.ReasonReportStale) {
		t.Fatalf("stale answer = %+v", a)
	}

	v = e.report(t, bad.ID, windows("10.0.22631", false, t0))
	if v.Compliant || !slices.Equal(codes(v.Reasons), []string{policies.CodeEncryptionOff}) {
		t.Fatalf("noncompliant verdict = %+v", v)
	}
	if a := e.index.Lookup(bad.ID, t0); a.Allow || !slices.Contains(codes(a.Reasons), policies.CodeEncryptionOff) {
		t.Fatalf("noncompliant answer = %+v", a)
	}
	if a := e.index.Lookup(silent.ID, t0); a.Allow || !slices.Contains(codes(a.Reasons), access.ReasonNoReport) {
		t.Fatalf("silent device answer = %+v", a)
	}
	if a := e.index.Lookup("d_ffffffffffffffff", t0); a.Allow || a.Reasons[0].Code != access.ReasonUnknownDevice {
		t.Fatalf("unknown device answer = %+v", a)
	}
	if _, err := e.eng.IngestAgentReport(ctx, "d_ffffffffffffffff", windows("10.0.22631", true, t0), t0); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("report of an unknown device = %v", err)
	}

	// Locking the device denies it and tells the hooks.
	var mu sync.Mutex
	var flips []string
	e.eng.OnChange(func(_ context.Context, changes []compliance.Change) {
		mu.Lock()
		for _, c := range changes {
			flips = append(flips, fmt.Sprintf("%s %s->%s", c.DeviceID, c.Old.State, c.New.State))
		}
		mu.Unlock()
	})
	locked, err := e.inv.SetState(ctx, good.ID, inventory.StateLocked, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.DeviceChanged(ctx, locked); err != nil {
		t.Fatal(err)
	}
	if a := e.index.Lookup(good.ID, t0); a.Allow || a.Reasons[0].Code != access.ReasonLocked {
		t.Fatalf("locked device answer = %+v", a)
	}
	if want := []string{good.ID + " active->locked"}; !slices.Equal(flips, want) {
		t.Fatalf("hooks saw %v, want %v", flips, want)
	}
}

// TestWipeState checks that a device's unfinished wipe, read from its inventory record, reaches
// the index as the device's state (wipe_pending, then wipe_incomplete), is a change the hooks
// hear about once, survives later reports and a reload until it is lifted.
func TestWipeState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	d := e.device(t, "icu")
	e.report(t, d.ID, windows("10.0.22631", true, t0))
	var flips []string
	e.eng.OnChange(func(_ context.Context, changes []compliance.Change) {
		for _, c := range changes {
			flips = append(flips, c.Old.State+"->"+c.New.State)
		}
	})
	setWipe := func(w *inventory.WipeStatus) {
		t.Helper()
		got, err := e.inv.Update(ctx, d.ID, func(d *inventory.Device) error { d.Wipe = w; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.eng.DeviceChanged(ctx, got); err != nil {
			t.Fatal(err)
		}
	}

	setWipe(&inventory.WipeStatus{CommandID: "c1", State: inventory.WipePending})
	e.report(t, d.ID, windows("10.0.22631", true, t0.Add(time.Minute)))
	if a := e.index.Lookup(d.ID, t0.Add(time.Minute)); a.Allow || a.State != "wipe_pending" || a.Reasons[0].Code != access.ReasonWipePending {
		t.Fatalf("answer with a wipe pending = %+v", a)
	}
	// A change that read the record before the wipe committed, applied after it, keeps it.
	if _, err := e.eng.DeviceChanged(ctx, d); err != nil {
		t.Fatal(err)
	}
	if a := e.index.Lookup(d.ID, t0.Add(time.Minute)); a.Allow || a.State != "wipe_pending" {
		t.Fatalf("answer after a stale change = %+v", a)
	}
	e.reopen(t)
	if a := e.index.Lookup(d.ID, t0.Add(time.Minute)); a.Allow || a.State != "wipe_pending" {
		t.Fatalf("answer with a wipe pending after a reload = %+v", a)
	}
	e.eng.OnChange(func(_ context.Context, changes []compliance.Change) {
		for _, c := range changes {
			flips = append(flips, c.Old.State+"->"+c.New.State)
		}
	})
	setWipe(&inventory.WipeStatus{CommandID: "c1", State: inventory.WipeIncomplete})
	if a := e.index.Lookup(d.ID, t0.Add(time.Minute)); a.Allow || a.State != "wipe_incomplete" || a.Reasons[0].Code != access.ReasonWipeIncomplete {
		t.Fatalf("answer with a wipe incomplete = %+v", a)
	}
	setWipe(nil)
	if a := e.index.Lookup(d.ID, t0.Add(time.Minute)); !a.Allow {
		t.Fatalf("answer after the wipe state lifted = %+v", a)
	}
	if want := []string{"active->wipe_pending", "wipe_pending->wipe_incomplete", "wipe_incomplete->active"}; !slices.Equal(flips, want) {
		t.Fatalf("hooks saw %v, want %v", flips, want)
	}
}

func TestGraceAndHistory(t *testing.T) {
	e := newEnv(t)
	d := e.device(t, "icu")
	e.putPolicy(t, "clinical", gracePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")

	v := e.report(t, d.ID, windows("10.0.22631", false, t0))
	if v.Compliant || !v.NoncompliantSince.Equal(t0) || !v.GraceUntil.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("verdict = %+v", v)
	}
	if a := e.index.Lookup(d.ID, t0.Add(time.Hour)); !a.Allow || !a.InGrace || len(a.Reasons) == 0 {
		t.Fatalf("answer in grace = %+v", a)
	}
	// Past grace the index denies at read time, before anything re-evaluates.
	if a := e.index.Lookup(d.ID, t0.Add(25*time.Hour)); a.Allow || !slices.Contains(codes(a.Reasons), access.ReasonGraceExpired) {
		t.Fatalf("answer past grace = %+v", a)
	}
	// no_report when the device appeared, then the failing report (same instant, two rows).
	if n := historyLen(t, e, d.ID); n != 2 {
		t.Fatalf("history rows = %d, want 2", n)
	}

	// The same failure reported again keeps the start of the run and writes no history row.
	e.clock.Set(t0.Add(25 * time.Hour))
	v = e.report(t, d.ID, windows("10.0.22631", false, e.clock.Now()))
	if v.Compliant || !v.NoncompliantSince.Equal(t0) || v.Allowed(e.clock.Now()) {
		t.Fatalf("verdict past grace = %+v", v)
	}
	if a := e.index.Lookup(d.ID, e.clock.Now()); a.Allow {
		t.Fatalf("answer past grace after report = %+v", a)
	}
	if st, err := e.eng.ReevaluateAll(context.Background()); err != nil || st.Changed != 0 {
		t.Fatalf("ReevaluateAll = %+v, %v; want nothing changed", st, err)
	}
	if n := historyLen(t, e, d.ID); n != 2 {
		t.Fatalf("history rows = %d, want 2 (codes did not change)", n)
	}

	// Compliant again clears the run.
	e.clock.Set(t0.Add(26 * time.Hour))
	v = e.report(t, d.ID, windows("10.0.22631", true, e.clock.Now()))
	if !v.Compliant || !v.NoncompliantSince.IsZero() || !v.GraceUntil.IsZero() {
		t.Fatalf("verdict after fix = %+v", v)
	}
	if a := e.index.Lookup(d.ID, e.clock.Now()); !a.Allow || a.InGrace || len(a.Reasons) != 0 {
		t.Fatalf("answer after fix = %+v", a)
	}
	e.clock.Set(t0.Add(27 * time.Hour))
	e.report(t, d.ID, windows("10.0.22631", true, e.clock.Now()))
	h, err := e.eng.History(context.Background(), d.ID, 10)
	if err != nil || len(h) != 3 || h[1].Compliant || !h[2].Compliant || !h[2].EvaluatedAt.Equal(t0.Add(26*time.Hour)) {
		t.Fatalf("history = %+v, %v", h, err)
	}

	// A new noncompliant run starts its own grace period.
	e.clock.Set(t0.Add(30 * time.Hour))
	v = e.report(t, d.ID, windows("10.0.22631", false, e.clock.Now()))
	if !v.NoncompliantSince.Equal(t0.Add(30*time.Hour)) || !v.Allowed(e.clock.Now()) {
		t.Fatalf("new run verdict = %+v", v)
	}

	// Silence: the periodic pass records report_stale once the report is older than 48h.
	e.clock.Set(t0.Add(79 * time.Hour))
	if st, err := e.eng.ReevaluateAll(context.Background()); err != nil || st.Changed != 1 {
		t.Fatalf("staleness pass = %+v, %v", st, err)
	}
	if v, _, _ := e.eng.Verdict(d.ID); !slices.Contains(codes(v.Reasons), policies.CodeReportStale) {
		t.Fatalf("verdict after silence = %+v", v)
	}
	if n := historyLen(t, e, d.ID); n != 5 {
		t.Fatalf("history rows = %d, want 5", n)
	}
}

func TestReevaluateAllStricterPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	var old []string
	for i := range 10 {
		d := e.device(t, "icu")
		ver := "10.0.22631"
		if i%2 == 0 {
			ver, old = "10.0.19045", append(old, d.ID)
		}
		if v := e.report(t, d.ID, windows(ver, true, t0)); !v.Compliant {
			t.Fatalf("device %d not compliant under the base policy: %+v", i, v)
		}
	}
	var mu sync.Mutex
	var denied []string
	e.eng.OnChange(func(_ context.Context, changes []compliance.Change) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range changes {
			if now := e.clock.Now(); c.Old.Answer(now).Allow && !c.New.Answer(now).Allow {
				denied = append(denied, c.DeviceID)
			}
		}
	})
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Devices != 10 || st.Changed != 0 {
		t.Fatalf("pass without a change = %+v, %v", st, err)
	}

	e.putPolicy(t, "clinical", strictPolicy)
	e.clock.Set(t0.Add(time.Minute)) // history rows are keyed by evaluation time
	before := storeDump(t, e)
	st, err := e.eng.ReevaluateAll(ctx)
	// Half the devices flip to denied; only their verdicts are rewritten.
	if err != nil || st.Devices != 10 || st.Changed != 5 {
		t.Fatalf("pass after the stricter policy = %+v, %v", st, err)
	}
	slices.Sort(denied)
	slices.Sort(old)
	if !slices.Equal(denied, old) {
		t.Fatalf("hooks saw denials %v, want %v", denied, old)
	}
	for _, id := range old {
		a := e.index.Lookup(id, e.clock.Now())
		if a.Allow || !slices.Contains(codes(a.Reasons), policies.CodeOSTooOld) {
			t.Fatalf("old device %s answer = %+v", id, a)
		}
		// no_report at creation, compliant after the report, os_too_old after the change: three
		// rows, even though the first two happened at the same instant.
		if n := historyLen(t, e, id); n != 3 {
			t.Fatalf("history rows of %s = %d, want 3", id, n)
		}
	}
	after := storeDump(t, e)
	changedKeys := 0
	for k, v := range after {
		if before[k] != v {
			changedKeys++
		}
	}
	if changedKeys != 5+5 { // five verdicts, five history rows
		t.Fatalf("%d keys written, want 10", changedKeys)
	}
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Changed != 0 {
		t.Fatalf("second pass = %+v, %v", st, err)
	}

	// A shorter report age moves no verdict but moves every staleness deadline in the index.
	e.putPolicy(t, "clinical", "encryption: {required: true}\nreporting: {max_age: 1h}\nos: {windows: 10.0.22631}\n")
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Changed != 0 {
		t.Fatalf("pass after a max_age change = %+v, %v", st, err)
	}
	for _, id := range old {
		if v, _, _ := e.eng.Verdict(id); v.PolicyVersion != 2 {
			t.Fatalf("unchanged verdict rewritten: %+v", v)
		}
	}
	if a := e.index.Lookup(old[0], t0.Add(2*time.Hour)); !slices.Contains(codes(a.Reasons), access.ReasonReportStale) {
		t.Fatalf("index kept the old staleness deadline: %+v", a)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	e.putPolicy(t, "ward-policy", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	e.assign(t, compliance.Target{Kind: compliance.TargetGroup, Name: "ward"}, "ward-policy")
	oldICU, newICU, oldWard := e.device(t, "icu"), e.device(t, "icu"), e.device(t, "ward")
	e.report(t, oldICU.ID, windows("10.0.19045", true, t0))
	e.report(t, newICU.ID, windows("10.0.22631", true, t0))
	e.report(t, oldWard.ID, windows("10.0.19045", true, t0))

	strict, err := policies.Parse([]byte(strictPolicy))
	if err != nil {
		t.Fatal(err)
	}
	strict.Name = "clinical"
	before := storeDump(t, e)
	answers := func() []access.Answer {
		var out []access.Answer
		for _, id := range []string{oldICU.ID, newICU.ID, oldWard.ID} {
			out = append(out, e.index.Lookup(id, t0))
		}
		return out
	}
	beforeAnswers := answers()

	for _, tc := range []struct {
		target compliance.Target
		want   []string
	}{
		{compliance.Target{}, []string{oldICU.ID}}, // where "clinical" applies now: the default
		{compliance.Target{Kind: compliance.TargetDefault}, []string{oldICU.ID}},
		{compliance.Target{Kind: compliance.TargetGroup, Name: "ward"}, []string{oldWard.ID}},
		{compliance.Target{Kind: compliance.TargetDevice, Name: newICU.ID}, nil},
		{compliance.Target{Kind: compliance.TargetDevice, Name: oldWard.ID}, []string{oldWard.ID}},
	} {
		res, err := e.eng.DryRun(ctx, strict, tc.target)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res {
			got = append(got, r.DeviceID)
			if !slices.Equal(codes(r.Reasons), []string{policies.CodeOSTooOld}) {
				t.Errorf("dry-run reasons of %s = %v", r.DeviceID, r.Reasons)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("DryRun(%+v) = %v, want %v", tc.target, got, tc.want)
		}
	}
	if after := storeDump(t, e); !reflect.DeepEqual(before, after) {
		t.Fatal("DryRun wrote to the database")
	}
	if !reflect.DeepEqual(beforeAnswers, answers()) {
		t.Fatal("DryRun changed the index")
	}
}

func TestRestartRestores(t *testing.T) {
	e := newEnv(t)
	e.putPolicy(t, "clinical", gracePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	good, bad, silent := e.device(t, "icu"), e.device(t, "icu"), e.device(t, "icu")
	e.report(t, good.ID, windows("10.0.22631", true, t0))
	e.report(t, bad.ID, windows("10.0.22631", false, t0))
	mdm := policies.Observe(false, policies.ProvenanceMDM, t0)
	if _, err := e.eng.IngestAppleResult(context.Background(), bad.ID, func(p *policies.Posture) { p.SecureBoot = mdm }); err != nil {
		t.Fatal(err)
	}
	ids := []string{good.ID, bad.ID, silent.ID}
	at := t0.Add(2 * time.Hour)
	var before []access.Answer
	var verdicts []policies.Verdict
	for _, id := range ids {
		before = append(before, e.index.Lookup(id, at))
		v, _, _ := e.eng.Verdict(id)
		verdicts = append(verdicts, v)
	}
	e.reopen(t)
	if !e.index.Loaded() || e.index.Len() != 3 {
		t.Fatalf("index after restart: loaded %v, %d devices", e.index.Loaded(), e.index.Len())
	}
	for i, id := range ids {
		a := e.index.Lookup(id, at)
		if !reflect.DeepEqual(jsonRoundTrip(t, a), jsonRoundTrip(t, before[i])) {
			t.Errorf("answer of %s after restart = %+v, want %+v", id, a, before[i])
		}
		v, p, _ := e.eng.Verdict(id)
		if !reflect.DeepEqual(jsonRoundTrip(t, v), jsonRoundTrip(t, verdicts[i])) {
			t.Errorf("verdict of %s after restart = %+v, want %+v", id, v, verdicts[i])
		}
		if id == bad.ID && (p.SecureBoot == nil || p.SecureBoot.Source != policies.ProvenanceMDM || p.DiskEncrypted == nil) {
			t.Errorf("merged posture lost after restart: %+v", p)
		}
	}
	if !before[0].Allow || !before[1].Allow || !before[1].InGrace || before[2].Allow {
		t.Fatalf("unexpected answers before restart: %+v", before)
	}
}

// TestConcurrentIngest runs reports, re-evaluations and dry runs at once (for -race) and checks
// that every report was committed.
func TestConcurrentIngest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	var ids []string
	for range 20 {
		ids = append(ids, e.device(t, "icu").ID)
	}
	p, _ := policies.Parse([]byte(strictPolicy))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			for j := range 5 {
				if _, err := e.eng.IngestAgentReport(ctx, id, windows("10.0.22631", (i+j)%2 == 0, t0), t0); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := e.eng.ReevaluateAll(ctx); err != nil {
				t.Error(err)
			}
			if _, err := e.eng.DryRun(ctx, p, compliance.Target{Kind: compliance.TargetDefault}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	e.reopen(t)
	for i, id := range ids {
		want := (i+4)%2 == 0
		if a := e.index.Lookup(id, t0); a.Allow != want {
			t.Errorf("device %d after restart: allow %v, want %v", i, a.Allow, want)
		}
	}
}

func TestRunStaleness(t *testing.T) {
	e := newEnv(t)
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	d := e.device(t, "icu")
	e.report(t, d.ID, windows("10.0.22631", true, t0))
	e.clock.Set(t0.Add(49 * time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.eng.RunStaleness(ctx, time.Hour); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, _, _ := e.eng.Verdict(d.ID); slices.Contains(codes(v.Reasons), policies.CodeReportStale) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RunStaleness did not record the stale report")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// FuzzIngestAgentReport feeds decoded agent reports of any shape to the engine: it must never
// panic, and whatever it accepts must survive a restart.
func FuzzIngestAgentReport(f *testing.F) {
	seed, _ := json.Marshal(windows("10.0.22631", true, t0))
	for _, s := range []string{
		string(seed), `{}`, `{"platform":"plan9"}`,
		`{"platform":"windows","os":{"value":{"version":"99999999999999999999.1"},"source":"attested","observed_at":"9999-12-31T23:59:59Z"}}`,
		`{"platform":"linux","disk_encrypted":{"value":true,"source":"mdm"},"restrictions":{"value":{"a":true}}}`,
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f)
	e.putPolicy(f, "clinical", strictPolicy)
	e.assign(f, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	d := e.device(f, "icu")
	f.Fuzz(func(t *testing.T, data []byte) {
		var p policies.Posture
		if json.Unmarshal(data, &p) != nil {
			return
		}
		v, err := e.eng.IngestAgentReport(context.Background(), d.ID, &p, t0)
		if err != nil {
			return
		}
		got, pos, _ := e.eng.Verdict(d.ID)
		if got.Compliant != v.Compliant || pos == nil || !pos.ReportedAt.Equal(t0) {
			t.Fatalf("verdict in memory %+v, returned %+v", got, v)
		}
		for _, c := range []*policies.Claim[bool]{pos.DiskEncrypted, pos.SecureBoot, pos.Jailbroken} {
			if c != nil && (c.Source != policies.ProvenanceAgent || c.ObservedAt.After(t0)) {
				t.Fatalf("agent claim kept source %q, observed %s", c.Source, c.ObservedAt)
			}
		}
		idx := access.NewIndex()
		eng, err := compliance.NewEngine(complianceStore(e.st), e.ps, idx, compliance.WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(context.Background()); err != nil {
			t.Fatalf("stored report does not load: %v", err)
		}
	})
}
