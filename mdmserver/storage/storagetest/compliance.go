package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// testCompliance is the contract of compliance.Repository (policies and assignments; postures,
// verdicts and history; Apple policy deliveries) and the policy store's rules over it.
func testCompliance(t *testing.T, open Opener) {
	t.Run("policies", func(t *testing.T) { compliancePolicies(t, open) })
	t.Run("assignments", func(t *testing.T) { complianceAssignments(t, open) })
	t.Run("postures and verdicts", func(t *testing.T) { compliancePostures(t, open) })
	t.Run("deliveries", func(t *testing.T) { complianceDeliveries(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { complianceRollback(t, open) })
	t.Run("concurrent batches", func(t *testing.T) { complianceConcurrent(t, open) })
	t.Run("policy versions survive a reopen", func(t *testing.T) { compliancePolicyStoreReopen(t, open) })
	t.Run("policy generation", func(t *testing.T) { compliancePolicyGeneration(t, open) })
}

// generation reads the stored policy generation.
func generation(t *testing.T, st storage.Store) uint64 {
	t.Helper()
	var g uint64
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		var err error
		g, err = tx.Compliance().PolicyGeneration(ctx)
		return err
	})
	return g
}

// compliancePolicyGeneration: the generation starts at 0, counts in its unit of work (a
// rollback undoes it), is invisible to the policy reads, survives a reopen, and every change the
// PolicyStore makes counts one.
func compliancePolicyGeneration(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	ctx := context.Background()
	if g := generation(t, st); g != 0 {
		t.Fatalf("generation of an empty store = %d", g)
	}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		for want := uint64(1); want <= 2; want++ {
			if g, err := r.NextPolicyGeneration(ctx); err != nil || g != want {
				return fmt.Errorf("NextPolicyGeneration = %d, %v; want %d", g, err, want)
			}
		}
		if g, err := r.PolicyGeneration(ctx); err != nil || g != 2 {
			return fmt.Errorf("PolicyGeneration in the unit of work that counted = %d, %v; want 2", g, err)
		}
		return nil
	})
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx storage.Tx) error {
		if _, err := tx.Compliance().NextPolicyGeneration(ctx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failed unit of work: %v", err)
	}
	if g := generation(t, st); g != 2 {
		t.Fatalf("generation after a rolled-back count = %d, want 2", g)
	}
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		if ps, err := r.CurrentPolicies(ctx); err != nil || len(ps) != 0 {
			return fmt.Errorf("the generation shows as a policy: %d policies, %v", len(ps), err)
		}
		if v, err := r.LastPolicyVersion(ctx, "generation"); err != nil || v != 0 {
			return fmt.Errorf("LastPolicyVersion(generation) = %d, %v", v, err)
		}
		return nil
	})
	st = Reopen(t, open, st, dir)
	if g := generation(t, st); g != 2 {
		t.Fatalf("generation after a reopen = %d, want 2", g)
	}
	ps, err := compliance.NewPolicyStore(ctx, complianceStore(st))
	if err != nil {
		t.Fatal(err)
	}
	if g := ps.Generation(); g != 2 {
		t.Fatalf("PolicyStore loaded at generation %d, want 2", g)
	}
	def := compliance.Target{Kind: compliance.TargetDefault}
	steps := []func() error{
		func() error { _, err := ps.Put(ctx, "clinical", []byte("grace: 1h\n"), "admin"); return err },
		func() error { return ps.Assign(ctx, def, "clinical") },
		func() error { return ps.Unassign(ctx, def) },
		func() error { return ps.Delete(ctx, "clinical") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		want := uint64(3 + i)
		if g, m := generation(t, st), ps.Generation(); g != want || m != want {
			t.Fatalf("after change %d: stored %d, memory %d; want %d", i+1, g, m, want)
		}
	}
}

// complianceStore narrows st to what the policy store and the engine use, as the server does.
func complianceStore(st storage.Store) compliance.Store {
	return storage.Scope(st, func(tx storage.Tx) compliance.Tx { return tx })
}

var complianceT0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func storedPolicy(name string, version int) *compliance.StoredPolicy {
	return &compliance.StoredPolicy{Name: name, Version: version, Source: fmt.Appendf(nil, "grace: %dh\n", version),
		UpdatedAt: complianceT0.Add(time.Duration(version) * time.Minute), UpdatedBy: "admin"}
}

func samePolicy(a, b *compliance.StoredPolicy) bool {
	return a.Name == b.Name && a.Version == b.Version && string(a.Source) == string(b.Source) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && a.UpdatedBy == b.UpdatedBy
}

func compliancePolicies(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		// Versions 1, 2 and 10 of "a" (big-endian keys keep them in numeric order) and one of
		// "ab", whose name "a" prefixes.
		for _, sp := range []*compliance.StoredPolicy{storedPolicy("a", 1), storedPolicy("a", 2), storedPolicy("a", 10), storedPolicy("ab", 1)} {
			if err := r.PutPolicy(ctx, sp); err != nil {
				return err
			}
		}
		return nil
	})
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		cur, err := r.CurrentPolicies(ctx)
		if err != nil {
			return err
		}
		slices.SortFunc(cur, func(a, b *compliance.StoredPolicy) int { return strings.Compare(a.Name, b.Name) })
		if len(cur) != 2 || !samePolicy(cur[0], storedPolicy("a", 10)) || !samePolicy(cur[1], storedPolicy("ab", 1)) || cur[0].Policy != nil {
			t.Errorf("CurrentPolicies = %+v", cur)
		}
		vs, err := r.PolicyVersions(ctx, "a")
		if err != nil {
			return err
		}
		if len(vs) != 3 || vs[0].Version != 1 || vs[1].Version != 2 || vs[2].Version != 10 {
			t.Errorf("PolicyVersions(a) = %+v", vs)
		}
		if sp, err := r.PolicyVersion(ctx, "a", 2); err != nil || !samePolicy(sp, storedPolicy("a", 2)) {
			t.Errorf("PolicyVersion(a, 2) = %+v, %v", sp, err)
		}
		if _, err := r.PolicyVersion(ctx, "a", 3); !errors.Is(err, compliance.ErrNotFound) {
			t.Errorf("PolicyVersion of a missing version: %v, want ErrNotFound", err)
		}
		if n, err := r.LastPolicyVersion(ctx, "a"); err != nil || n != 10 {
			t.Errorf("LastPolicyVersion(a) = %d, %v", n, err)
		}
		if n, err := r.LastPolicyVersion(ctx, "none"); err != nil || n != 0 {
			t.Errorf("LastPolicyVersion of a new name = %d, %v", n, err)
		}
		if err := r.PutPolicy(ctx, storedPolicy("a", 11)); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutPolicy in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	// A deleted policy keeps its versions and its last version number.
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.Compliance().DeletePolicy(ctx, "a") })
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		cur, _ := r.CurrentPolicies(ctx)
		vs, _ := r.PolicyVersions(ctx, "a")
		n, err := r.LastPolicyVersion(ctx, "a")
		if len(cur) != 1 || cur[0].Name != "ab" || len(vs) != 3 || n != 10 {
			t.Errorf("after delete: current %+v, %d versions, last %d", cur, len(vs), n)
		}
		return err
	})
}

func complianceAssignments(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	def := compliance.Target{Kind: compliance.TargetDefault}
	icu := compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}
	dev := compliance.Target{Kind: compliance.TargetDevice, Name: "d_0000000000000001"}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		for _, a := range []compliance.Assignment{{Target: def, Policy: "base"}, {Target: icu, Policy: "icu"}, {Target: dev, Policy: "x"}, {Target: icu, Policy: "strict"}} {
			if err := r.PutAssignment(ctx, a); err != nil {
				return err
			}
		}
		if err := r.DeleteAssignment(ctx, compliance.Target{Kind: compliance.TargetGroup, Name: "none"}); err != nil {
			return err
		}
		return r.DeleteAssignment(ctx, dev)
	})
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		as, err := tx.Compliance().Assignments(ctx)
		got := map[compliance.Target]string{}
		for _, a := range as {
			got[a.Target] = a.Policy
		}
		if len(as) != 2 || got[def] != "base" || got[icu] != "strict" {
			t.Errorf("Assignments = %+v", as)
		}
		return err
	})
}

func compliancePostures(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	p := &policies.Posture{Platform: policies.PlatformWindows, ReportedAt: complianceT0,
		DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, complianceT0)}
	verdict := func(compliant bool, at time.Duration) *policies.Verdict {
		v := &policies.Verdict{Compliant: compliant, EvaluatedAt: complianceT0.Add(at), PolicyName: "base", PolicyVersion: 1}
		if !compliant {
			v.Reasons = []policies.Reason{{Code: policies.CodeEncryptionOff, Detail: "off"}}
		}
		return v
	}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		if err := r.PutPosture(ctx, "d1", p); err != nil {
			return err
		}
		// d1: three history rows and a verdict that is not one; d10 (whose ID d1 prefixes): one.
		for i, v := range []*policies.Verdict{verdict(false, 0), verdict(true, time.Hour), verdict(false, 2*time.Hour)} {
			if err := r.PutVerdict(ctx, "d1", v, true); err != nil {
				return err
			}
			if i == 0 {
				if err := r.PutVerdict(ctx, "d10", verdict(true, 0), true); err != nil {
					return err
				}
			}
		}
		return r.PutVerdict(ctx, "d1", verdict(false, 3*time.Hour), false)
	})
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		postures := map[string]*policies.Posture{}
		if err := r.ForEachPosture(ctx, func(id string, p *policies.Posture) error { postures[id] = p; return nil }); err != nil {
			return err
		}
		if got := postures["d1"]; len(postures) != 1 || got == nil || got.DiskEncrypted == nil || !got.DiskEncrypted.Value || !got.ReportedAt.Equal(complianceT0) {
			t.Errorf("postures = %+v", postures)
		}
		verdicts := map[string]*policies.Verdict{}
		if err := r.ForEachVerdict(ctx, func(id string, v *policies.Verdict) error { verdicts[id] = v; return nil }); err != nil {
			return err
		}
		if len(verdicts) != 2 || !verdicts["d1"].EvaluatedAt.Equal(complianceT0.Add(3*time.Hour)) || !verdicts["d10"].Compliant {
			t.Errorf("verdicts = %+v", verdicts)
		}
		h, err := r.History(ctx, "d1", 100)
		if err != nil {
			return err
		}
		if len(h) != 3 || h[0].Compliant || !h[1].Compliant || !h[2].EvaluatedAt.Equal(complianceT0.Add(2*time.Hour)) ||
			len(h[2].Reasons) != 1 || h[2].Reasons[0].Code != policies.CodeEncryptionOff {
			t.Errorf("History(d1) = %+v", h)
		}
		if h, err := r.History(ctx, "d1", 2); err != nil || len(h) != 2 || !h[1].Compliant {
			t.Errorf("History(d1, 2) = %+v, %v", h, err)
		}
		if h, err := r.History(ctx, "d2", 100); err != nil || len(h) != 0 {
			t.Errorf("History of a device without any = %+v, %v", h, err)
		}
		if err := r.PutPosture(ctx, "d1", p); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutPosture in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
}

func complianceDeliveries(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	want := compliance.Delivery{Policy: "hipaa", Version: 3, Platform: "ios", Identifiers: []string{"hale.passcode", "hale.restrictions"}, DeclarationsToken: "0f1e"}
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		if _, ok, err := tx.Compliance().Delivery(ctx, "d1"); ok || err != nil {
			t.Errorf("Delivery before any = %v, %v", ok, err)
		}
		return nil
	})
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.Compliance().PutDelivery(ctx, "d1", want) })
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		got, ok, err := tx.Compliance().Delivery(ctx, "d1")
		if !ok || got.Policy != want.Policy || got.Version != want.Version || got.Platform != want.Platform || !slices.Equal(got.Identifiers, want.Identifiers) {
			t.Errorf("Delivery = %+v, %v", got, ok)
		}
		return err
	})
}

func complianceRollback(t *testing.T, open Opener) {
	st := Fresh(t, open)
	boom := errors.New("boom")
	err := st.Update(context.Background(), func(tx storage.Tx) error {
		ctx := context.Background()
		r := tx.Compliance()
		if err := r.PutPolicy(ctx, storedPolicy("a", 1)); err != nil {
			return err
		}
		if err := r.PutAssignment(ctx, compliance.Assignment{Target: compliance.Target{Kind: compliance.TargetDefault}, Policy: "a"}); err != nil {
			return err
		}
		if err := r.PutPosture(ctx, "d1", &policies.Posture{}); err != nil {
			return err
		}
		if err := r.PutVerdict(ctx, "d1", &policies.Verdict{EvaluatedAt: complianceT0}, true); err != nil {
			return err
		}
		if err := r.PutDelivery(ctx, "d1", compliance.Delivery{Policy: "a"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Compliance()
		cur, _ := r.CurrentPolicies(ctx)
		last, _ := r.LastPolicyVersion(ctx, "a")
		as, _ := r.Assignments(ctx)
		h, _ := r.History(ctx, "d1", 10)
		_, delivered, _ := r.Delivery(ctx, "d1")
		records := 0
		_ = r.ForEachPosture(ctx, func(string, *policies.Posture) error { records++; return nil })
		_ = r.ForEachVerdict(ctx, func(string, *policies.Verdict) error { records++; return nil })
		if len(cur) != 0 || last != 0 || len(as) != 0 || len(h) != 0 || delivered || records != 0 {
			t.Errorf("a failed unit of work left policies %d (last %d), assignments %d, history %d, delivery %v, postures and verdicts %d",
				len(cur), last, len(as), len(h), delivered, records)
		}
		return nil
	})
}

// complianceConcurrent writes verdicts with history from many goroutines in batches, as
// reports do (for -race): every row commits, each device's history in its own order.
func complianceConcurrent(t *testing.T, open Opener) {
	st := Fresh(t, open)
	const devices, reports = 16, 10
	var wg sync.WaitGroup
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("d%02d", d)
			for i := range reports {
				v := &policies.Verdict{Compliant: i%2 == 0, EvaluatedAt: complianceT0.Add(time.Duration(i) * time.Minute)}
				err := st.Batch(context.Background(), func(tx storage.Tx) error {
					ctx := context.Background()
					if err := tx.Compliance().PutPosture(ctx, id, &policies.Posture{ReportedAt: v.EvaluatedAt}); err != nil {
						return err
					}
					return tx.Compliance().PutVerdict(ctx, id, v, true)
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		for d := range devices {
			h, err := tx.Compliance().History(ctx, fmt.Sprintf("d%02d", d), 100)
			if err != nil {
				return err
			}
			if len(h) != reports {
				t.Errorf("device %d: %d history rows, want %d", d, len(h), reports)
			}
			for i := range h {
				if !h[i].EvaluatedAt.Equal(complianceT0.Add(time.Duration(i) * time.Minute)) {
					t.Errorf("device %d row %d evaluated at %s: out of order", d, i, h[i].EvaluatedAt)
				}
			}
		}
		return nil
	})
}

// compliancePolicyStoreReopen runs the policy store's rules over the store across a reopen:
// versions are never reused, also after a delete, and what was assigned is still assigned.
func compliancePolicyStoreReopen(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	ctx := context.Background()
	ps, err := compliance.NewPolicyStore(ctx, complianceStore(st))
	if err != nil {
		t.Fatal(err)
	}
	const src = "encryption: {required: true}\n"
	for range 2 {
		if _, err := ps.Put(ctx, "clinical", []byte(src), "admin"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ps.Delete(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Put(ctx, "other", []byte(src), "admin"); err != nil {
		t.Fatal(err)
	}
	if err := ps.Assign(ctx, compliance.Target{Kind: compliance.TargetDefault}, "other"); err != nil {
		t.Fatal(err)
	}
	// A rejected document stores nothing.
	if _, err := ps.Put(ctx, "other", []byte("bogus: 1"), "admin"); err == nil {
		t.Fatal("Put accepted an unknown field")
	}
	st = Reopen(t, open, st, dir)
	if ps, err = compliance.NewPolicyStore(ctx, complianceStore(st)); err != nil {
		t.Fatal(err)
	}
	if sp, err := ps.Put(ctx, "clinical", []byte(src), "admin"); err != nil || sp.Version != 3 {
		t.Fatalf("Put after delete and reopen = %+v, %v; want version 3", sp, err)
	}
	if sp, err := ps.Get(ctx, "other"); err != nil || sp.Version != 1 || sp.Policy == nil {
		t.Fatalf("Get(other) after reopen = %+v, %v", sp, err)
	}
	if as := ps.Assignments(); len(as) != 1 || as[0].Policy != "other" {
		t.Fatalf("Assignments after reopen = %+v", as)
	}
	if vs, err := ps.Versions(ctx, "clinical"); err != nil || len(vs) != 3 || vs[2].Version != 3 {
		t.Fatalf("Versions after reopen = %d, %v", len(vs), err)
	}
}
