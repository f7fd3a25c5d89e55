package agent

import (
	"context"
	"path/filepath"
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
