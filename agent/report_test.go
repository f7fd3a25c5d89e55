package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

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
