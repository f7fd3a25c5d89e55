package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/policies"
)

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func enrollDevice(t *testing.T, f *fakeServer, token string) (*state.Store, *state.Identity) {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: token, CAFingerprint: f.fingerprint()})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return store, id
}

// counterCollector reports a posture whose pending_security_updates claim is its counter:
// changing the counter changes the posture.
type counterCollector struct {
	value atomic.Int64
	calls atomic.Int64
}

func (c *counterCollector) collect(ctx context.Context) (*policies.Posture, []CollectorError) {
	c.calls.Add(1)
	now := time.Now()
	return &policies.Posture{
		Platform:        policies.PlatformLinux,
		ReportedAt:      now,
		PendingSecurity: policies.Observe(int(c.value.Load()), policies.ProvenanceAgent, now),
		DiskEncrypted:   policies.Observe(true, policies.ProvenanceAgent, now),
	}, []CollectorError{{Collector: "firewall", Error: "nft missing"}}
}

type recordingRunner struct {
	mu    sync.Mutex
	calls [][]string
	err   error
}

func (r *recordingRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]string{name}, args...))
	return []byte("ok"), r.err
}

func (r *recordingRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func fastOptions(extra ...Option) []Option {
	return append([]Option{
		WithIntervalBounds(20*time.Millisecond, 2*time.Second),
		WithCollectInterval(20 * time.Millisecond),
		WithRequestTimeout(300 * time.Millisecond),
		WithPollWait(200 * time.Millisecond),
		WithBackoff(10*time.Millisecond, 80*time.Millisecond),
		WithWipeReportWindow(time.Second),
	}, extra...)
}

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func start(t *testing.T, a *Agent) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = a.Run(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not stop within 5s of cancellation")
	}
	return r.err
}

func newAgent(t *testing.T, store *state.Store, c Collector, opts ...Option) *Agent {
	t.Helper()
	a, err := New(store, c, fastOptions(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEnrollFingerprint(t *testing.T) {
	f := newFakeServer(t)
	t.Run("match writes a private identity", func(t *testing.T) {
		store, id := enrollDevice(t, f, "tok-1")
		if id.DeviceID == "" || id.ServerURL != f.URL() || id.CAFingerprint != f.fingerprint() {
			t.Fatalf("identity %+v", id)
		}
		for _, name := range []string{state.KeyFile, state.CertFile, state.CAFile, state.IdentityFile} {
			fi, err := os.Stat(store.Path(name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
			}
		}
		if fi, _ := os.Stat(store.Dir()); fi.Mode().Perm() != 0o700 {
			t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
		}
		// Re-enrolling refuses without --force and keeps the identity.
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-2", CAFingerprint: f.fingerprint()})
		if err == nil || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("re-enroll without force: %v", err)
		}
		keyBefore, _ := store.ReadFile(state.KeyFile)
		id2, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-2", CAFingerprint: strings.ToUpper(colons(f.fingerprint())), Force: true})
		if err != nil {
			t.Fatalf("re-enroll with force: %v", err)
		}
		keyAfter, _ := store.ReadFile(state.KeyFile)
		if id2.DeviceID == id.DeviceID || string(keyBefore) == string(keyAfter) {
			t.Fatal("force did not create a new identity and key")
		}
		// The used token is refused.
		other, _ := state.Open(t.TempDir())
		_, err = Enroll(context.Background(), other, EnrollConfig{ServerURL: f.URL(), Token: "tok-1", CAFingerprint: f.fingerprint()})
		if err == nil || problemStatus(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "refused the enrollment token") {
			t.Fatalf("used token: %v", err)
		}
	})
	t.Run("mismatch refuses and writes nothing", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		wrong := strings.Repeat("ab", 32)
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", CAFingerprint: wrong})
		if err == nil || !strings.Contains(err.Error(), "fingerprint") {
			t.Fatalf("mismatch: %v", err)
		}
		if store.Enrolled() {
			t.Fatal("identity written after a fingerprint mismatch")
		}
		if _, err := os.Stat(store.Path(state.KeyFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("key written after a fingerprint mismatch")
		}
		f.mu.Lock()
		unused := f.tokens["tok-3"]
		f.mu.Unlock()
		if !unused {
			t.Fatal("the token was spent although the agent refused the server")
		}
	})
	t.Run("no fingerprint needs the system roots", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", SystemRoots: x509.NewCertPool()})
		if err == nil || !strings.Contains(err.Error(), "--ca-fingerprint") {
			t.Fatalf("untrusted server without fingerprint: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(f.ca.root)
		id, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", SystemRoots: roots})
		if err != nil {
			t.Fatalf("trusted server: %v", err)
		}
		if id.CAFingerprint != f.fingerprint() {
			t.Fatal("pinned something other than the server CA")
		}
	})
	t.Run("bad input", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		for _, c := range []EnrollConfig{
			{ServerURL: "http://x", Token: "t"},
			{ServerURL: f.URL(), Token: ""},
			{ServerURL: f.URL(), Token: "t", CAFingerprint: "abc"},
		} {
			if _, err := Enroll(context.Background(), store, c); err == nil {
				t.Errorf("%+v: no error", c)
			}
		}
	})
}

func colons(hex string) string {
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestReportLoopNoncesAndChange(t *testing.T) {
	f := newFakeServer(t)
	f.set(func(f *fakeServer) { f.nextReportIn = "1h" }) // clamped to 2s: only changes report sooner
	store, id := enrollDevice(t, f, "tok-1")
	col := &counterCollector{}
	a := newAgent(t, store, col.collect)
	start(t, a)

	eventually(t, 5*time.Second, "first report", func() bool { return len(f.reportsCopy()) == 1 })
	eventually(t, 5*time.Second, "several unchanged collections", func() bool { return col.calls.Load() > 5 })
	if n := len(f.reportsCopy()); n != 1 {
		t.Fatalf("an unchanged posture was reported %d times within the interval", n)
	}
	col.value.Store(7)
	eventually(t, time.Second, "change-triggered report", func() bool { return len(f.reportsCopy()) == 2 })

	reps := f.reportsCopy()
	r := reps[1].report
	if reps[1].device != id.DeviceID || r.Posture.PendingSecurity == nil || r.Posture.PendingSecurity.Value != 7 {
		t.Fatalf("report %+v", reps[1])
	}
	if r.Sequence <= reps[0].report.Sequence || r.Nonce == reps[0].report.Nonce {
		t.Fatal("sequence not increasing or nonce reused")
	}
	if len(r.Errors) != 1 || r.Errors[0].Collector != "firewall" {
		t.Fatalf("collector errors not reported: %+v", r.Errors)
	}
	f.mu.Lock()
	invalid := f.nonceInvalid
	f.mu.Unlock()
	if invalid != 0 {
		t.Fatalf("agent used %d invalid nonces", invalid)
	}

	// A captured report replayed with the device's own certificate is refused.
	body, _ := json.Marshal(r)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pinnedTLS(f.ca.root, a.cert.Load)}}
	resp, err := hc.Post(f.URL()+"/agent/v1/report", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("replayed report: status %d, want 409", resp.StatusCode)
	}
}

func TestReportNonceInvalidRetriesOnce(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	col := &counterCollector{}
	a := newAgent(t, store, col.collect)
	// The server forgets every nonce: the agent fetches a fresh one and retries exactly once,
	// then backs off.
	f.set(func(f *fakeServer) { f.forgetNonces = true })
	var failed atomic.Int64
	a.observer = func(e Event) {
		if e.Kind == "report-failed" {
			failed.Add(1)
		}
	}
	start(t, a)
	eventually(t, 5*time.Second, "failed reports", func() bool { return failed.Load() >= 3 })
	f.mu.Lock()
	invalid := f.nonceInvalid
	f.mu.Unlock()
	if n := failed.Load(); int64(invalid) > 2*n+2 || int64(invalid) < 2*(n-1) {
		t.Fatalf("%d nonce-invalid answers for %d failed reports: want two tries each", invalid, n)
	}
	f.set(func(f *fakeServer) { f.forgetNonces = false })
	eventually(t, 5*time.Second, "a report after the nonces work again", func() bool { return len(f.reportsCopy()) > 0 })
}

func TestReportOutageKeepsOnlyLatest(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { f.mode = modeDown })
	col := &counterCollector{}
	a := newAgent(t, store, func(ctx context.Context) (*policies.Posture, []CollectorError) {
		col.value.Add(1) // every collection differs: each would be a report of its own
		return col.collect(ctx)
	})
	start(t, a)
	eventually(t, 10*time.Second, "many collections during the outage", func() bool { return col.calls.Load() > 60 })
	if n := len(f.reportsCopy()); n != 0 {
		t.Fatalf("%d reports accepted while down", n)
	}
	upAt := col.value.Load()
	f.set(func(f *fakeServer) { f.mode = modeOK })
	eventually(t, 5*time.Second, "delivery after the outage", func() bool { return len(f.reportsCopy()) > 0 })
	first := f.reportsCopy()[0].report
	if got := int64(first.Posture.PendingSecurity.Value); got < upAt {
		t.Fatalf("first report after the outage carries collection %d, older than %d collected before recovery", got, upAt)
	}
	if first.Sequence < upAt-1 {
		t.Fatalf("sequence %d: a stale report was kept", first.Sequence)
	}
}

func TestReportLoopSurvivesGarbageAndSlowness(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	col := &counterCollector{}
	var failures atomic.Int64
	a := newAgent(t, store, col.collect, WithObserver(func(e Event) {
		if e.Kind == "report-failed" {
			failures.Add(1)
		}
	}))
	r := start(t, a)
	for _, mode := range []int{modeGarbage, modeSlow} {
		f.set(func(f *fakeServer) { f.mode = mode })
		base := failures.Load()
		eventually(t, 10*time.Second, "failures", func() bool { return failures.Load() >= base+2 })
	}
	select {
	case <-r.done:
		t.Fatalf("the agent stopped: %v", r.err)
	default:
	}
	f.set(func(f *fakeServer) { f.mode = modeOK })
	eventually(t, 5*time.Second, "a report once the server behaves", func() bool { return len(f.reportsCopy()) > 0 })
}

func TestCollectorPanicDoesNotKillLoop(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	a := newAgent(t, store, func(context.Context) (*policies.Posture, []CollectorError) { panic("boom") })
	start(t, a)
	eventually(t, 5*time.Second, "a report despite the panic", func() bool { return len(f.reportsCopy()) > 0 })
	rep := f.reportsCopy()[0].report
	if len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0].Error, "panicked") {
		t.Fatalf("errors %+v", rep.Errors)
	}
}

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

func TestRenewal(t *testing.T) {
	f := newFakeServer(t)
	f.set(func(f *fakeServer) { f.certLife = 1500 * time.Millisecond })
	store, _ := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { f.certLife = time.Hour })
	a := newAgent(t, store, (&counterCollector{}).collect)
	oldSerial := a.Certificate().Leaf.SerialNumber.String()
	var renewed atomic.Bool
	a.observer = func(e Event) {
		if e.Kind == "renewed" {
			renewed.Store(true)
		}
	}
	start(t, a)
	eventually(t, 5*time.Second, "renewal", renewed.Load)
	newLeaf := a.Certificate().Leaf
	if newLeaf.SerialNumber.String() == oldSerial || time.Until(newLeaf.NotAfter) < 30*time.Minute {
		t.Fatal("certificate not replaced")
	}
	b, _ := store.ReadFile(state.CertFile)
	certs, err := state.ParseChain(b)
	if err != nil || certs[0].SerialNumber.Cmp(newLeaf.SerialNumber) != 0 {
		t.Fatal("renewed certificate not persisted")
	}
	// Traffic after renewal presents the new certificate (the old one has expired by then).
	time.Sleep(1600 * time.Millisecond)
	n := len(f.reportsCopy())
	eventually(t, 5*time.Second, "a report with the new certificate", func() bool {
		reps := f.reportsCopy()
		return len(reps) > n && reps[len(reps)-1].serial == newLeaf.SerialNumber.String()
	})
}

func TestNewRefusesTamperedCA(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	other := newTestCA(t)
	if err := store.WriteFile(state.CAFile, []byte(pemOf(other.root))); err != nil {
		t.Fatal(err)
	}
	if _, err := New(store, (&counterCollector{}).collect); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("New with a swapped CA: %v", err)
	}
}

func TestPinnedTLSRefusesOtherServer(t *testing.T) {
	f := newFakeServer(t)
	g := newFakeServer(t) // another CA
	store, _ := enrollDevice(t, f, "tok-1")
	id, _ := store.LoadIdentity()
	id.ServerURL = g.URL()
	if err := store.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, store, (&counterCollector{}).collect)
	var nr nonceResponse
	err := a.client.do(context.Background(), time.Second, http.MethodGet, "/agent/v1/nonce", nil, &nr)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("talking to a server of another CA: %v, want a verification error", err)
	}
}

func TestRevokedDeviceKeepsRunningAndRecovers(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { delete(f.devices, id.DeviceID) }) // 403 device-unknown
	var failed atomic.Int64
	a := newAgent(t, store, (&counterCollector{}).collect, WithObserver(func(e Event) {
		if e.Kind == "report-failed" && strings.Contains(e.Err.Error(), "refused this device's certificate") {
			failed.Add(1)
		}
	}))
	r := start(t, a)
	eventually(t, 5*time.Second, "refused reports", func() bool { return failed.Load() >= 3 })
	select {
	case <-r.done:
		t.Fatalf("a refused certificate stopped the agent: %v", r.err)
	default:
	}
	f.set(func(f *fakeServer) { f.devices[id.DeviceID] = true })
	eventually(t, 5*time.Second, "a report once the device is known again", func() bool { return len(f.reportsCopy()) > 0 })
}

// TestOutageMemoryBounded collects large postures through a long outage: the heap must not grow
// with the number of collections, since only the latest unsent report is kept.
func TestOutageMemoryBounded(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { f.mode = modeDown })
	var calls atomic.Int64
	big := func(ctx context.Context) (*policies.Posture, []CollectorError) {
		n := calls.Add(1)
		m := make(map[string]bool, 1000)
		for i := range 1000 {
			m[strings.Repeat("k", 20)+strconvItoa(int(n)*10000+i)] = true
		}
		now := time.Now()
		return &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: now,
			Restrictions: policies.Observe(m, policies.ProvenanceAgent, now)}, nil
	}
	a := newAgent(t, store, big, WithCollectInterval(time.Millisecond), WithIntervalBounds(time.Millisecond, time.Second))
	start(t, a)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	eventually(t, 10*time.Second, "warm-up collections", func() bool { return calls.Load() > 20 })
	before := heap()
	eventually(t, 20*time.Second, "200 collections during the outage", func() bool { return calls.Load() > 220 })
	after := heap()
	// 200 postures of ~50 KB each would be ~10 MB if they were queued.
	if after > before+4<<20 {
		t.Fatalf("heap grew from %d to %d bytes over 200 collections: reports are piling up", before, after)
	}
	t.Logf("heap %d KiB -> %d KiB over %d collections", before>>10, after>>10, calls.Load()-20)
}

func strconvItoa(i int) string { return strconv.Itoa(i) }

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
