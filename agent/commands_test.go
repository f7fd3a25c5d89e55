package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/policies"
)

func TestLockCommand(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	runner := &recordingRunner{}
	a := newAgent(t, store, (&counterCollector{}).collect, WithRunner(runner), WithLockCommand("/usr/bin/loginctl", "lock-sessions"))
	start(t, a)
	f.enqueue(id.DeviceID, Command{ID: "c_lock1", Type: "lock", Reason: "lost", IssuedAt: time.Now()})
	eventually(t, 5*time.Second, "lock result", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ok := f.results["c_lock1"]
		return ok
	})
	f.mu.Lock()
	res := f.results["c_lock1"]
	f.mu.Unlock()
	if res.Status != "done" || res.FinishedAt.IsZero() {
		t.Fatalf("result %+v", res)
	}
	runner.mu.Lock()
	calls := slices.Clone(runner.calls)
	runner.mu.Unlock()
	if len(calls) != 1 || !slices.Equal(calls[0], []string{"/usr/bin/loginctl", "lock-sessions"}) {
		t.Fatalf("runner calls %q", calls)
	}
	eventually(t, 5*time.Second, "journal records the acknowledgement", func() bool {
		e, err := store.Entry("c_lock1")
		return err == nil && e != nil && e.Phase == state.PhaseReported
	})
}

func TestFailedLockAndFullWipeAndUnknownType(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	runner := &recordingRunner{err: errors.New("exit status 1")}
	a := newAgent(t, store, (&counterCollector{}).collect, WithRunner(runner))
	r := start(t, a)
	f.enqueue(id.DeviceID, Command{ID: "c_l", Type: "lock"})
	f.enqueue(id.DeviceID, Command{ID: "c_full", Type: "wipe", Mode: "full"})
	f.enqueue(id.DeviceID, Command{ID: "c_x", Type: "erase-everything"})
	eventually(t, 5*time.Second, "three results", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.results) == 3
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, want := range map[string]string{"c_l": "exit status 1", "c_full": "selective", "c_x": "not supported"} {
		if res := f.results[id]; res.Status != "failed" || !strings.Contains(res.Detail, want) {
			t.Errorf("%s: %+v", id, res)
		}
	}
	select {
	case <-r.done:
		t.Fatal("a refused full wipe stopped the agent")
	default:
	}
	if !store.Enrolled() {
		t.Fatal("a refused full wipe removed the state")
	}
}

func TestSelectiveWipe(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "keep.txt"))
	app := filepath.Join(root, "alice", ".config", "SecureChat")
	mustWrite(t, filepath.Join(app, "db", "messages.sqlite"))
	mustWrite(t, filepath.Join(app, "cache", "a.bin"))
	// A link inside the managed data pointing outside: removed as a link, target untouched.
	if err := os.Symlink(outside, filepath.Join(app, "escape")); err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(root, "bob", "token.json")
	mustWrite(t, single)
	sibling := filepath.Join(root, "alice", "notes.txt")
	mustWrite(t, sibling)

	a := newAgent(t, store, (&counterCollector{}).collect, WithWipeRoots(root))
	r := start(t, a)
	f.enqueue(id.DeviceID, Command{ID: "c_wipe", Type: "wipe", Mode: "selective",
		ManagedData: []string{app, single, filepath.Join(root, "carol", "absent")}})
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop after the wipe")
	}
	if !errors.Is(r.err, ErrWiped) {
		t.Fatalf("Run returned %v, want ErrWiped", r.err)
	}
	for _, p := range []string{app, single} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists", p)
		}
	}
	for _, p := range []string{sibling, filepath.Join(outside, "keep.txt")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if _, err := os.Stat(store.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("state directory still exists: %v", err)
	}
	f.mu.Lock()
	res := f.results["c_wipe"]
	f.mu.Unlock()
	got, _ := outcomes(res.Paths)
	if res.Status != "done" || !slices.Equal(res.Removed, []string{app, single}) ||
		!slices.Equal(got, []string{app + " removed", single + " removed", filepath.Join(root, "carol", "absent") + " absent"}) {
		t.Fatalf("result %+v", res)
	}
	// The loop stopped: no more reports arrive.
	n := len(f.reportsCopy())
	time.Sleep(100 * time.Millisecond)
	if len(f.reportsCopy()) != n {
		t.Fatal("reports continued after the wipe")
	}
	if _, err := New(store, (&counterCollector{}).collect); !errors.Is(err, state.ErrNotEnrolled) {
		t.Fatalf("New after wipe: %v, want ErrNotEnrolled", err)
	}
}

func mustWrite(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("phi"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCommandIdempotentAcrossRestart(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	runner := &recordingRunner{}
	f.set(func(f *fakeServer) { f.ackResults = false })
	f.enqueue(id.DeviceID, Command{ID: "c_once", Type: "lock"})

	a1 := newAgent(t, store, (&counterCollector{}).collect, WithRunner(runner))
	r1 := start(t, a1)
	// The server keeps redelivering the unacknowledged command; the agent runs it once.
	eventually(t, 5*time.Second, "several result attempts", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.resultCalls["c_once"] >= 3
	})
	r1.stop(t)
	if runner.count() != 1 {
		t.Fatalf("ran %d times before the restart", runner.count())
	}
	e, _ := store.Entry("c_once")
	if e == nil || e.Phase != state.PhaseDone {
		t.Fatalf("journal %+v, want done", e)
	}

	// Restart: the result is re-posted (now acknowledged) and the command is not run again.
	f.set(func(f *fakeServer) { f.ackResults = true })
	a2 := newAgent(t, store, (&counterCollector{}).collect, WithRunner(runner))
	start(t, a2)
	eventually(t, 5*time.Second, "acknowledged result", func() bool {
		e, _ := store.Entry("c_once")
		return e != nil && e.Phase == state.PhaseReported
	})
	time.Sleep(300 * time.Millisecond) // a poll or two, in case the server redelivers
	if runner.count() != 1 {
		t.Fatalf("ran %d times in total, want 1", runner.count())
	}
	f.mu.Lock()
	res := f.results["c_once"]
	f.mu.Unlock()
	if res.Status != "done" {
		t.Fatalf("result %+v", res)
	}
}

func TestWipeResumesAfterRestart(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	// A previous run removed the data and journaled "done" but died before reporting.
	if err := store.Record(&state.Entry{ID: "c_w", Type: "wipe", Mode: "selective", Phase: state.PhaseDone, Unenroll: true,
		Result: &state.Result{Status: "done", Removed: []string{"/x"}, FinishedAt: time.Now()}, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, store, (&counterCollector{}).collect)
	if err := a.Run(context.Background()); !errors.Is(err, ErrWiped) {
		t.Fatalf("Run: %v, want ErrWiped", err)
	}
	f.mu.Lock()
	res, ok := f.results["c_w"]
	f.mu.Unlock()
	if !ok || res.Status != "done" {
		t.Fatalf("wipe result not re-posted: %+v", res)
	}
	if store.Enrolled() {
		t.Fatal("state survived the resumed wipe")
	}
}

func TestPolicyFetchedOnETagChangeAndUsedByWipe(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	root := t.TempDir()
	managed := filepath.Join(root, "alice", "SecureChat")
	mustWrite(t, filepath.Join(managed, "db"))
	f.set(func(f *fakeServer) {
		f.policy = &policies.AgentPolicy{Policy: "clinical", Version: 1, Platform: policies.PlatformLinux,
			ReportInterval: policies.Duration(time.Minute), ManagedData: []string{managed}}
	})
	col := &counterCollector{}
	a := newAgent(t, store, col.collect, WithWipeRoots(root))
	r := start(t, a)
	eventually(t, 5*time.Second, "policy stored", func() bool {
		sp := a.policy.Load()
		return sp != nil && sp.Policy.Version == 1 && sp.ETag != ""
	})
	// Later reports announce the same ETag: no refetch.
	eventually(t, 5*time.Second, "more reports", func() bool {
		col.value.Add(1)
		return len(f.reportsCopy()) > 4
	})
	f.mu.Lock()
	calls := f.policyCalls
	f.mu.Unlock()
	if calls != 1 {
		t.Fatalf("policy fetched %d times for one ETag", calls)
	}
	b, err := store.ReadFile(PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	if sp, err := decodeStoredPolicy(b); err != nil || sp.Policy.Policy != "clinical" {
		t.Fatalf("stored policy %v %v", sp, err)
	}
	// A wipe that leaves managed_data to the policy removes the policy's paths.
	f.enqueue(id.DeviceID, Command{ID: "c_pw", Type: "wipe", Mode: "selective"})
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no wipe")
	}
	if _, err := os.Stat(managed); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("policy managed data not removed")
	}
}
