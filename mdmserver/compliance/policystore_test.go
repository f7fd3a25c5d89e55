package compliance_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

const (
	basePolicy   = "encryption: {required: true}\nreporting: {max_age: 48h}\n"
	strictPolicy = basePolicy + "os: {windows: 10.0.22631}\n"
	gracePolicy  = basePolicy + "grace: 24h\n"
)

func TestPolicyVersioning(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v1 := e.putPolicy(t, "clinical", basePolicy)
	v2 := e.putPolicy(t, "clinical", strictPolicy)
	if v1.Version != 1 || v2.Version != 2 || v2.Policy.Version != 2 || v2.Policy.Name != "clinical" {
		t.Fatalf("versions %d %d (policy %s v%d)", v1.Version, v2.Version, v2.Policy.Name, v2.Policy.Version)
	}
	cur, err := e.ps.Get(ctx, "clinical")
	if err != nil || cur.Version != 2 || string(cur.Source) != strictPolicy || cur.UpdatedBy != "admin" || !cur.UpdatedAt.Equal(t0) {
		t.Fatalf("Get = %+v, %v", cur, err)
	}
	old, err := e.ps.GetVersion(ctx, "clinical", 1)
	if err != nil || old.Version != 1 || string(old.Source) != basePolicy || old.Policy.OS != nil {
		t.Fatalf("GetVersion(1) = %+v, %v", old, err)
	}
	if _, err := e.ps.GetVersion(ctx, "clinical", 3); !errors.Is(err, compliance.ErrNotFound) {
		t.Fatalf("GetVersion(3) error = %v, want ErrNotFound", err)
	}

	// An invalid document stores nothing and names the field and line.
	_, err = e.ps.Put(ctx, "clinical", []byte("encryption: {required: true}\npasscode:\n  min_length: 99\n"), "admin")
	var ve *policies.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != "passcode.min_length" || ve.Problems[0].Line != 3 {
		t.Fatalf("invalid Put error = %#v", err)
	}
	if _, err := e.ps.Put(ctx, "new-policy", []byte("bogus: 1"), "admin"); !errors.As(err, &ve) {
		t.Fatalf("unknown field error = %v", err)
	}
	if _, err := e.ps.Get(ctx, "new-policy"); !errors.Is(err, compliance.ErrNotFound) {
		t.Fatalf("rejected policy was stored: %v", err)
	}
	if _, err := e.ps.Put(ctx, "bad name!", []byte(basePolicy), "admin"); !errors.Is(err, compliance.ErrInvalidName) {
		t.Fatalf("bad name error = %v", err)
	}
	if cur, _ := e.ps.Get(ctx, "clinical"); cur.Version != 2 {
		t.Fatalf("a rejected Put moved the version to %d", cur.Version)
	}

	// Delete refuses while assigned, then deletes; versions are never reused.
	e.assign(t, compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}, "clinical")
	if err := e.ps.Delete(ctx, "clinical"); !errors.Is(err, compliance.ErrInUse) {
		t.Fatalf("Delete while assigned = %v, want ErrInUse", err)
	}
	if err := e.ps.Unassign(ctx, compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}); err != nil {
		t.Fatal(err)
	}
	if err := e.ps.Delete(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ps.Get(ctx, "clinical"); !errors.Is(err, compliance.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if err := e.ps.Assign(ctx, compliance.Target{Kind: compliance.TargetDefault}, "clinical"); !errors.Is(err, compliance.ErrNotFound) {
		t.Fatalf("assigning a deleted policy = %v", err)
	}
	if v3 := e.putPolicy(t, "clinical", basePolicy); v3.Version != 3 {
		t.Fatalf("version after delete = %d, want 3", v3.Version)
	}
	if vs, err := e.ps.Versions(ctx, "clinical"); err != nil || len(vs) != 3 || vs[0].Version != 1 || vs[2].Version != 3 {
		t.Fatalf("Versions = %d, %v", len(vs), err)
	}

	// Everything survives a restart.
	e.putPolicy(t, "other", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "other")
	e.reopen(t)
	list, _ := e.ps.List(ctx)
	if len(list) != 2 || list[0].Name != "clinical" || list[0].Version != 3 || list[0].Policy == nil || list[1].Name != "other" {
		t.Fatalf("List after restart = %+v", list)
	}
	if as := e.ps.Assignments(); len(as) != 1 || as[0].Policy != "other" || as[0].Target.Kind != compliance.TargetDefault {
		t.Fatalf("Assignments after restart = %+v", as)
	}
	if v4 := e.putPolicy(t, "clinical", basePolicy); v4.Version != 4 {
		t.Fatalf("version after restart = %d, want 4", v4.Version)
	}
}

func TestPrecedence(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dev := &inventory.Device{ID: "d_0000000000000001", Group: "icu"}
	if sp, err := e.ps.Effective(dev); err != nil || sp != nil {
		t.Fatalf("Effective with nothing assigned = %v, %v", sp, err)
	}
	for _, n := range []string{"def", "grp", "dev"} {
		e.putPolicy(t, n, basePolicy)
	}
	want := func(name string) {
		t.Helper()
		sp, err := e.ps.Effective(dev)
		got := ""
		if sp != nil {
			got = sp.Name
		}
		if err != nil || got != name {
			t.Fatalf("Effective = %q, %v; want %q", got, err, name)
		}
	}
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "def")
	want("def")
	e.assign(t, compliance.Target{Kind: compliance.TargetGroup, Name: "ward"}, "grp")
	want("def")
	e.assign(t, compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}, "grp")
	want("grp")
	e.assign(t, compliance.Target{Kind: compliance.TargetDevice, Name: dev.ID}, "dev")
	want("dev")
	if err := e.ps.Unassign(ctx, compliance.Target{Kind: compliance.TargetDevice, Name: dev.ID}); err != nil {
		t.Fatal(err)
	}
	want("grp")
	if err := e.ps.Unassign(ctx, compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}); err != nil {
		t.Fatal(err)
	}
	want("def")

	for _, bad := range []compliance.Target{{}, {Kind: "owner", Name: "x"}, {Kind: compliance.TargetDefault, Name: "x"}, {Kind: compliance.TargetGroup}} {
		if err := e.ps.Assign(ctx, bad, "def"); !errors.Is(err, compliance.ErrInvalidTarget) {
			t.Errorf("Assign(%+v) = %v, want ErrInvalidTarget", bad, err)
		}
	}
	as := e.ps.Assignments()
	if len(as) != 2 || as[0].Target.Kind != compliance.TargetDefault || as[1].Target != (compliance.Target{Kind: compliance.TargetGroup, Name: "ward"}) {
		t.Fatalf("Assignments = %+v", as)
	}
}

// FuzzPolicyPut feeds arbitrary documents to Put: it must never panic, and a rejected document
// must leave nothing behind.
func FuzzPolicyPut(f *testing.F) {
	for _, s := range []string{basePolicy, strictPolicy, gracePolicy, "", "{}", "grace: [", `{"encryption":{"required":true}}`, "a: &a [*a]"} {
		f.Add([]byte(s))
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		ctx := context.Background()
		version := func() int {
			if sp, err := e.ps.Get(ctx, "fuzz"); err == nil {
				return sp.Version
			}
			return 0
		}
		before := version()
		sp, err := e.ps.Put(ctx, "fuzz", src, "fuzzer")
		after := version()
		if err != nil {
			if after != before {
				t.Fatalf("rejected Put moved the version from %d to %d", before, after)
			}
			return
		}
		if after != before+1 || sp.Version != after || sp.Policy == nil {
			t.Fatalf("accepted Put: version %d -> %d, returned %d", before, after, sp.Version)
		}
	})
}

// secondServer is another server's PolicyStore on e's store: memory of its own, loaded now and
// not reloaded unless the test says so.
func (e *env) secondServer(t *testing.T) *compliance.PolicyStore {
	t.Helper()
	ps, err := compliance.NewPolicyStore(context.Background(), complianceStore(e.st), compliance.WithPolicyClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// storedGeneration reads the store's policy generation.
func (e *env) storedGeneration(t *testing.T) uint64 {
	t.Helper()
	var g uint64
	err := complianceStore(e.st).View(context.Background(), func(tx compliance.Tx) error {
		var err error
		g, err = tx.Compliance().PolicyGeneration(context.Background())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPolicyRulesAcrossServers(t *testing.T) {
	ctx := context.Background()
	icu := compliance.Target{Kind: compliance.TargetGroup, Name: "icu"}

	t.Run("assigned on A cannot be deleted on B", func(t *testing.T) {
		e := newEnv(t)
		e.putPolicy(t, "clinical", basePolicy)
		b := e.secondServer(t) // knows the policy, not the assignment below
		e.assign(t, icu, "clinical")
		if as := b.Assignments(); len(as) != 0 {
			t.Fatalf("B's memory already has %+v; the test needs it stale", as)
		}
		if err := b.Delete(ctx, "clinical"); !errors.Is(err, compliance.ErrInUse) {
			t.Fatalf("B deleting a policy A assigned = %v, want ErrInUse", err)
		}
		if err := e.ps.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if sp, err := e.ps.Get(ctx, "clinical"); err != nil || sp.Version != 1 {
			t.Fatalf("the policy after B's refused delete: %+v, %v", sp, err)
		}
	})

	t.Run("deleted on A cannot be assigned on B", func(t *testing.T) {
		e := newEnv(t)
		e.putPolicy(t, "clinical", basePolicy)
		b := e.secondServer(t)
		if err := e.ps.Delete(ctx, "clinical"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, "clinical"); err != nil {
			t.Fatalf("B's memory lost the policy already (%v); the test needs it stale", err)
		}
		if err := b.Assign(ctx, icu, "clinical"); !errors.Is(err, compliance.ErrNotFound) {
			t.Fatalf("B assigning a policy A deleted = %v, want ErrNotFound", err)
		}
		if err := e.ps.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if as := e.ps.Assignments(); len(as) != 0 {
			t.Fatalf("a deleted policy was assigned: %+v", as)
		}
	})

	t.Run("deleted on A cannot be deleted again on B", func(t *testing.T) {
		e := newEnv(t)
		e.putPolicy(t, "clinical", basePolicy)
		b := e.secondServer(t)
		if err := e.ps.Delete(ctx, "clinical"); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, "clinical"); !errors.Is(err, compliance.ErrNotFound) {
			t.Fatalf("B deleting a policy A deleted = %v, want ErrNotFound", err)
		}
	})

	t.Run("versions follow the store", func(t *testing.T) {
		e := newEnv(t)
		b := e.secondServer(t)
		e.putPolicy(t, "clinical", basePolicy)
		sp, err := b.Put(ctx, "clinical", []byte(strictPolicy), "admin")
		if err != nil || sp.Version != 2 {
			t.Fatalf("B's Put after A's = %+v, %v; want version 2", sp, err)
		}
	})
}

func TestPolicyGeneration(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	b := e.secondServer(t)
	if g := e.ps.Generation(); g != 0 || e.storedGeneration(t) != 0 {
		t.Fatalf("generation of an empty store: memory %d, stored %d", g, e.storedGeneration(t))
	}
	e.putPolicy(t, "clinical", basePolicy)
	e.assign(t, compliance.Target{Kind: compliance.TargetDefault}, "clinical")
	if g, s := e.ps.Generation(), e.storedGeneration(t); g != 2 || s != 2 {
		t.Fatalf("after a Put and an Assign: memory %d, stored %d; want 2, 2", g, s)
	}
	// A refused change counts nothing.
	if err := e.ps.Delete(ctx, "clinical"); !errors.Is(err, compliance.ErrInUse) {
		t.Fatal(err)
	}
	if _, err := e.ps.Put(ctx, "clinical", []byte("bogus: 1"), "admin"); err == nil {
		t.Fatal("Put accepted an unknown field")
	}
	if s := e.storedGeneration(t); s != 2 {
		t.Fatalf("refused changes moved the generation to %d", s)
	}
	// B has missed both: its generation says so.
	if g := b.Generation(); g != 0 {
		t.Fatalf("B's generation %d, want 0 (loaded before A's changes)", g)
	}
	// B's own change, on a stale memory, leaves B with everything the store holds.
	if _, err := b.Put(ctx, "other", []byte(basePolicy), "admin"); err != nil {
		t.Fatal(err)
	}
	if g := b.Generation(); g != 3 {
		t.Fatalf("B's generation after its Put = %d, want 3", g)
	}
	if sp, _ := b.Effective(&inventory.Device{ID: "d_0000000000000001"}); sp == nil || sp.Name != "clinical" {
		t.Fatalf("B's memory after its change misses A's assignment: %+v", sp)
	}
	// A missed B's change; Reload catches up, generation and all.
	if g := e.ps.Generation(); g != 2 {
		t.Fatalf("A's generation = %d, want 2", g)
	}
	if err := e.ps.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ps.Get(ctx, "other"); err != nil || e.ps.Generation() != 3 {
		t.Fatalf("A after Reload: %v, generation %d", err, e.ps.Generation())
	}
	if err := e.ps.Unassign(ctx, compliance.Target{Kind: compliance.TargetDefault}); err != nil {
		t.Fatal(err)
	}
	if err := e.ps.Delete(ctx, "clinical"); err != nil {
		t.Fatal(err)
	}
	if g, s := e.ps.Generation(), e.storedGeneration(t); g != 5 || s != 5 {
		t.Fatalf("after an Unassign and a Delete: memory %d, stored %d; want 5, 5", g, s)
	}
	e.reopen(t)
	if g := e.ps.Generation(); g != 5 {
		t.Fatalf("generation after a restart = %d, want 5", g)
	}
}

// A change waits for the store's writer while a unit of work holding it reads the policies in
// memory (as checkPolicies and Effective do); neither may wait for the other. CI once hung here
// for ten minutes: an Assign held the memory's lock while it waited for bbolt, and a report's
// unit of work held bbolt while it waited for the memory's lock.
func TestPolicyChangeDoesNotBlockUnitsOfWork(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.putPolicy(t, "clinical", basePolicy)
	gen := e.ps.Generation()
	assigned := make(chan error, 1)
	err := complianceStore(e.st).Update(ctx, func(compliance.Tx) error {
		go func() { assigned <- e.ps.Assign(ctx, compliance.Target{Kind: compliance.TargetDefault}, "clinical") }()
		for deadline := time.Now().Add(10 * time.Second); !compliance.Changing(e.ps); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				return errors.New("the Assign never started")
			}
		}
		read := make(chan uint64, 1)
		go func() {
			e.ps.Effective(&inventory.Device{ID: "d_0000000000000001"})
			read <- e.ps.Generation()
		}()
		select {
		case g := <-read:
			if g != gen {
				return fmt.Errorf("memory at generation %d before the Assign committed, want %d", g, gen)
			}
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("reading the policies inside a unit of work waits for a change that waits for this unit of work")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-assigned; err != nil {
		t.Fatal(err)
	}
	if g := e.ps.Generation(); g != gen+1 {
		t.Fatalf("generation after the Assign = %d, want %d", g, gen+1)
	}
}
