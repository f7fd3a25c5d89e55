package compliance_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// hidingStore is a compliance.Store over a real one whose inventory does not find the devices
// in gone, as if their records had been deleted (the inventory has no delete of its own).
type hidingStore struct {
	compliance.Store
	gone map[string]bool
}

type hidingTx struct {
	compliance.Tx
	gone map[string]bool
}

type hidingInventory struct {
	inventory.Repository
	gone map[string]bool
}

func (s *hidingStore) View(ctx context.Context, fn func(compliance.Tx) error) error {
	return s.Store.View(ctx, func(tx compliance.Tx) error { return fn(hidingTx{tx, s.gone}) })
}

func (tx hidingTx) Inventory() inventory.Repository {
	return hidingInventory{tx.Tx.Inventory(), tx.gone}
}

func (r hidingInventory) Get(ctx context.Context, id string) (*inventory.Device, error) {
	if r.gone[id] {
		return nil, inventory.ErrNotFound
	}
	return r.Repository.Get(ctx, id)
}

// replica is a second engine on the primary's store, as an access replica runs one: its own
// policy store and index, loaded, with hooks that count every call.
type replica struct {
	eng   *compliance.Engine
	ps    *compliance.PolicyStore
	index *access.Index
	gone  map[string]bool
	hooks atomic.Int64
}

func newReplica(tb testing.TB, e *env) *replica {
	tb.Helper()
	ctx := context.Background()
	r := &replica{index: access.NewIndex(), gone: map[string]bool{}}
	st := hidingStore{complianceStore(e.st), r.gone}
	var err error
	if r.ps, err = compliance.NewPolicyStore(ctx, &st, compliance.WithPolicyClock(e.clock.Now)); err != nil {
		tb.Fatal(err)
	}
	if r.eng, err = compliance.NewEngine(&st, r.ps, r.index, compliance.WithClock(e.clock.Now), compliance.WithSharedStore()); err != nil {
		tb.Fatal(err)
	}
	if err := r.eng.Load(ctx); err != nil {
		tb.Fatal(err)
	}
	r.eng.OnChange(func(context.Context, []compliance.Change) { r.hooks.Add(1) })
	r.eng.OnVerdict(func(_, _ *access.Decision, _ time.Time) { r.hooks.Add(1) })
	return r
}

// answer is a device's access answer at now, as the JSON the access API sends.
func answer(tb testing.TB, x *access.Index, id string, now time.Time) string {
	tb.Helper()
	b, err := json.Marshal(x.Lookup(id, now))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// sameAnswers fails unless the replica answers for every device as the primary does, now and
// at the instants when reports go stale.
func sameAnswers(tb testing.TB, e *env, r *replica, ids ...string) {
	tb.Helper()
	for _, id := range ids {
		for _, at := range []time.Time{e.clock.Now(), e.clock.Now().Add(2 * time.Hour), e.clock.Now().Add(49 * time.Hour)} {
			if p, q := answer(tb, e.index, id, at), answer(tb, r.index, id, at); p != q {
				tb.Fatalf("device %s at %s:\nprimary %s\nreplica %s", id, at, p, q)
			}
		}
	}
}

func TestRefreshFollowsPrimary(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	good, bad := e.device(t, "icu"), e.device(t, "icu")
	r := newReplica(t, e)

	// Reports reach the primary; a device enrolls there after the replica loaded.
	late := e.device(t, "icu")
	e.clock.Advance(time.Minute)
	e.report(t, good.ID, windows("10.0.22631", true, e.clock.Now()))
	e.report(t, bad.ID, windows("10.0.22631", false, e.clock.Now()))
	e.report(t, late.ID, windows("10.0.22631", true, e.clock.Now()))
	if answer(t, r.index, good.ID, e.clock.Now()) == answer(t, e.index, good.ID, e.clock.Now()) {
		t.Fatal("the replica answers as the primary before Refresh: the test proves nothing")
	}
	if a := r.index.Lookup(late.ID, e.clock.Now()); a.Reasons[0].Code != access.ReasonUnknownDevice {
		t.Fatalf("replica knows the late device before Refresh: %+v", a)
	}
	if err := r.eng.Refresh(ctx, good.ID, bad.ID, late.ID); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, e, r, good.ID, bad.ID, late.ID)
	if a := r.index.Lookup(good.ID, e.clock.Now()); !a.Allow {
		t.Fatalf("replica denies the compliant device: %+v", a)
	}
	if v, p, ok := r.eng.Verdict(late.ID); !ok || !v.Compliant || p == nil {
		t.Fatalf("replica Verdict of the late device = %+v %v %v", v, p, ok)
	}

	// The primary locks a device (an inventory change and DeviceChanged): one device refreshed.
	var primaryFlips atomic.Int64
	e.eng.OnChange(func(_ context.Context, cs []compliance.Change) { primaryFlips.Add(int64(len(cs))) })
	locked, err := e.inv.SetState(ctx, good.ID, inventory.StateLocked, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.DeviceChanged(ctx, locked); err != nil {
		t.Fatal(err)
	}
	if primaryFlips.Load() != 1 {
		t.Fatalf("primary hooks saw %d flips, want 1", primaryFlips.Load())
	}
	if err := r.eng.Refresh(ctx, good.ID); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, e, r, good.ID)
	if a := r.index.Lookup(good.ID, e.clock.Now()); a.Allow || a.State != string(inventory.StateLocked) {
		t.Fatalf("replica answer of the locked device %+v", a)
	}

	// A device in the inventory without a stored verdict is evaluated in memory, as Load does.
	quiet, err := e.inv.Create(ctx, inventory.Device{ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: "x@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.eng.Refresh(ctx, quiet.ID); err != nil {
		t.Fatal(err)
	}
	if a := r.index.Lookup(quiet.ID, e.clock.Now()); a.Allow || !slices.Contains(codes(a.Reasons), access.ReasonNoReport) {
		t.Fatalf("replica answer of a device without a verdict %+v", a)
	}

	// A device gone from the inventory: dropped, unknown_device.
	r.gone[bad.ID] = true
	if err := r.eng.Refresh(ctx, bad.ID, late.ID); err != nil {
		t.Fatal(err)
	}
	if a := r.index.Lookup(bad.ID, e.clock.Now()); a.Allow || a.Reasons[0].Code != access.ReasonUnknownDevice {
		t.Fatalf("replica answer of a deleted device %+v", a)
	}
	if _, _, ok := r.eng.Verdict(bad.ID); ok {
		t.Fatal("the replica engine still holds a deleted device")
	}
	sameAnswers(t, e, r, late.ID)

	// A failed read changes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	before := answer(t, r.index, good.ID, e.clock.Now())
	if err := r.eng.Refresh(cctx, good.ID); err == nil {
		t.Fatal("Refresh with a canceled context succeeded")
	}
	if got := answer(t, r.index, good.ID, e.clock.Now()); got != before {
		t.Fatalf("a failed Refresh changed the answer:\n%s\n%s", before, got)
	}
	if n := r.hooks.Load(); n != 0 {
		t.Fatalf("the replica's hooks were called %d times", n)
	}
}

func TestPoliciesChangedRepublishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.putPolicy(t, "clinical", basePolicy)
	fresh, old := e.device(t, "icu"), e.device(t, "icu")
	e.report(t, fresh.ID, windows("10.0.22631", true, t0))
	e.report(t, old.ID, windows("10.0.19045", true, t0))
	// Enrolled without an evaluation: no stored verdict.
	quiet, err := e.inv.Create(ctx, inventory.Device{ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: "x@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	r := newReplica(t, e)
	if a := r.index.Lookup(quiet.ID, t0); !slices.Contains(codes(a.Reasons), policies.CodeNoPolicy) {
		t.Fatalf("before any assignment the quiet device answers %+v", a)
	}

	// The primary assigns the policy and re-evaluates: verdicts move and are written.
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	if _, err := e.eng.ReevaluateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.PoliciesChanged(ctx); err != nil {
		t.Fatal(err)
	}
	if sp, _ := r.ps.Effective(&inventory.Device{ID: fresh.ID, Group: "icu"}); sp == nil || sp.Name != "clinical" {
		t.Fatalf("replica effective policy after Reload %+v", sp)
	}
	// The quiet device is evaluated again in memory at once; the rest follow the verdicts.
	if a := r.index.Lookup(quiet.ID, t0); !slices.Contains(codes(a.Reasons), access.ReasonNoReport) {
		t.Fatalf("after the assignment the quiet device answers %+v", a)
	}
	if err := r.eng.Refresh(ctx, fresh.ID, old.ID, quiet.ID); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, e, r, fresh.ID, old.ID)

	// A new version that only shortens the report age limit: no verdict moves, so nothing is
	// written and no Refresh comes, yet decisions go stale sooner.
	e.putPolicy(t, "clinical", "encryption: {required: true}\nreporting: {max_age: 1h}\n")
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Changed != 0 {
		t.Fatalf("ReevaluateAll = %+v, %v; want no verdict changed", st, err)
	}
	if !r.index.Lookup(fresh.ID, t0.Add(2*time.Hour)).Allow {
		t.Fatal("the replica denies at 2h before PoliciesChanged: the test proves nothing")
	}
	if err := r.eng.PoliciesChanged(ctx); err != nil {
		t.Fatal(err)
	}
	if a := r.index.Lookup(fresh.ID, t0.Add(2*time.Hour)); a.Allow || !slices.Contains(codes(a.Reasons), access.ReasonReportStale) {
		t.Fatalf("replica answer at 2h after a 1h limit %+v", a)
	}
	sameAnswers(t, e, r, fresh.ID, old.ID)

	// A stricter version: the primary writes the verdicts that moved; the replica follows.
	e.putPolicy(t, "clinical", strictPolicy)
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Changed != 1 {
		t.Fatalf("ReevaluateAll = %+v, %v; want one verdict changed", st, err)
	}
	if err := r.eng.PoliciesChanged(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.eng.Refresh(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	sameAnswers(t, e, r, fresh.ID, old.ID)
	if a := r.index.Lookup(old.ID, t0); a.Allow || !slices.Contains(codes(a.Reasons), policies.CodeOSTooOld) {
		t.Fatalf("replica answer of the outdated device %+v", a)
	}

	// A failed reload keeps the policies.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.eng.PoliciesChanged(cctx); err == nil {
		t.Fatal("PoliciesChanged with a canceled context succeeded")
	}
	if sp, _ := r.ps.Effective(&inventory.Device{ID: fresh.ID}); sp == nil || sp.Version != 3 {
		t.Fatalf("after a failed reload the effective policy is %+v", sp)
	}
	if n := r.hooks.Load(); n != 0 {
		t.Fatalf("the replica's hooks were called %d times", n)
	}
}
