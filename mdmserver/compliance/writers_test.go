package compliance_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/policies"
)

// Two engines writing one store, as two servers on one PostgreSQL database do: neither is told
// of the other's commits (no Refresh), so each one's memory is behind. What they write must
// still be what one engine would have written, and each transition is told once.
func TestTwoWritersShareAStore(t *testing.T) {
	a := newEnv(t)
	ctx := context.Background()
	a.putPolicy(t, "clinical", basePolicy)
	a.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	d := a.device(t, "icu")
	a.report(t, d.ID, windows("10.0.22631", true, a.clock.Now()))
	b := newReplica(t, a) // loaded now: it knows the device as compliant
	var aFlips, bFlips atomic.Int64
	a.eng.OnChange(func(_ context.Context, cs []compliance.Change) { aFlips.Add(int64(len(cs))) })
	b.eng.OnChange(func(_ context.Context, cs []compliance.Change) { bFlips.Add(int64(len(cs))) })

	// A: the messaging app's attestation says the disk is encrypted (a claim an agent's report
	// may not replace). B has not heard of it.
	a.clock.Advance(time.Minute)
	if _, err := a.eng.IngestAppReport(ctx, d.ID, func(p *policies.Posture) {
		p.DiskEncrypted = policies.Observe(true, policies.ProvenanceAttested, a.clock.Now())
	}); err != nil {
		t.Fatal(err)
	}
	// B: the agent reports the disk unencrypted. Merged into B's memory the attested claim
	// would be lost; merged into what the store holds it is kept.
	a.clock.Advance(time.Minute)
	v, err := b.eng.IngestAgentReport(ctx, d.ID, windows("10.0.22631", false, a.clock.Now()), a.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := b.eng.Verdict(d.ID)
	if p == nil || p.DiskEncrypted == nil || p.DiskEncrypted.Source != policies.ProvenanceAttested || !v.Compliant {
		t.Fatalf("B merged into its stale memory: posture %+v, verdict %+v", p, v)
	}

	// A: under a stricter policy the agent reports an old OS: noncompliant, told by A. Then B gets the same outcome: no second flip,
	// no second history row, although B's memory still says compliant.
	a.putPolicy(t, "clinical", strictPolicy)
	rows := historyLen(t, a, d.ID)
	a.clock.Advance(time.Minute)
	if v := a.report(t, d.ID, windows("10.0.19045", true, a.clock.Now())); v.Compliant {
		t.Fatalf("old OS compliant under the strict policy: %+v", v)
	}
	if aFlips.Load() != 1 {
		t.Fatalf("A told %d flips, want 1", aFlips.Load())
	}
	if err := b.ps.Reload(ctx); err != nil { // B's policies follow (the feed); its devices do not
		t.Fatal(err)
	}
	a.clock.Advance(time.Minute)
	if v, err := b.eng.IngestAgentReport(ctx, d.ID, windows("10.0.19045", true, a.clock.Now()), a.clock.Now()); err != nil || v.Compliant {
		t.Fatalf("B: %+v, %v", v, err)
	}
	if bFlips.Load() != 0 {
		t.Fatalf("B told %d flips of a transition A made and told", bFlips.Load())
	}
	if got := historyLen(t, a, d.ID); got != rows+1 {
		t.Fatalf("history rows %d after one transition, want %d", got, rows+1)
	}
	// B kept the noncompliance A started (not a new one from B's stale memory); A answers the
	// same once it follows B's commit.
	if v, _, _ := b.eng.Verdict(d.ID); !v.NoncompliantSince.Equal(a.clock.Now().Add(-time.Minute)) {
		t.Fatalf("B's verdict is noncompliant since %v, want A's %v", v.NoncompliantSince, a.clock.Now().Add(-time.Minute))
	}
	if err := a.eng.Refresh(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, a, b, d.ID)
}

// A policy changed through one engine is the policy the other evaluates with at its next
// commit, whether or not the change has reached it yet.
func TestWriterEvaluatesWithStoredPolicies(t *testing.T) {
	a := newEnv(t)
	ctx := context.Background()
	a.putPolicy(t, "clinical", basePolicy)
	a.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	d := a.device(t, "icu")
	b := newReplica(t, a)
	a.putPolicy(t, "clinical", strictPolicy) // B is not told
	if b.ps.Generation() == a.ps.Generation() {
		t.Fatal("B's policies follow A's without a reload: the test proves nothing")
	}
	a.clock.Advance(time.Minute)
	v, err := b.eng.IngestAgentReport(ctx, d.ID, windows("10.0.19045", true, a.clock.Now()), a.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if v.Compliant || v.PolicyVersion != 2 {
		t.Fatalf("B evaluated an old OS with policy version %d: %+v", v.PolicyVersion, v)
	}
	if b.ps.Generation() != a.ps.Generation() {
		t.Fatalf("B's policies at generation %d after its commit, the store's %d", b.ps.Generation(), a.ps.Generation())
	}
	// A fleet pass on B, after another change it was not told of, uses it too.
	a.putPolicy(t, "clinical", basePolicy)
	if _, err := b.eng.ReevaluateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := b.eng.Verdict(d.ID); !v.Compliant || v.PolicyVersion != 3 {
		t.Fatalf("B's pass kept %+v after the policy was relaxed", v)
	}
}
