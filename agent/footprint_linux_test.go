package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/collect"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/policies"
)

// cpuTime is user+system CPU of this process and its waited-for children (collectors run tools).
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// vmRSS reads VmRSS of pid ("self" for this process) in bytes.
func vmRSS(pid string) (int64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%s/status", pid)
}

// BenchmarkCollectCycle measures one real posture collection on this machine: CPU per cycle
// (getrusage, children included) and the size of the report it makes.
func BenchmarkCollectCycle(b *testing.B) {
	col := HostCollector(collect.WithStateDir(b.TempDir()))
	var cpu time.Duration
	var size int
	for b.Loop() {
		before := cpuTime()
		p, errs := col(context.Background())
		cpu += cpuTime() - before
		body, _ := json.Marshal(Report{Nonce: strings.Repeat("n", 22), Sequence: 1, CollectedAt: time.Now(), Posture: p, Errors: errs})
		size = len(body)
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/cycle")
	b.ReportMetric(float64(size), "report-bytes")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N)/600, "%core@60s")
}

// TestFootprint runs the agent alone in a child process (this test binary re-executed) against
// the fake server, with the real collectors, for HALE_FOOTPRINT_CYCLES report cycles, and
// reports the child's steady RSS. Opt in with HALE_FOOTPRINT=1 (it takes a while).
func TestFootprint(t *testing.T) {
	if os.Getenv("HALE_FOOTPRINT_CHILD") != "" {
		footprintChild(t)
		return
	}
	if os.Getenv("HALE_FOOTPRINT") == "" {
		t.Skip("footprint harness: set HALE_FOOTPRINT=1 (and optionally HALE_FOOTPRINT_CYCLES) to run it")
	}
	cycles := 50
	if n, err := strconv.Atoi(os.Getenv("HALE_FOOTPRINT_CYCLES")); err == nil && n > 0 {
		cycles = n
	}
	f := newFakeServer(t)
	f.set(func(f *fakeServer) { f.nextReportIn = "10ms" })
	store, id := enrollDevice(t, f, "tok-1")
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestFootprint$", "-test.v")
	cmd.Env = append(os.Environ(), "HALE_FOOTPRINT_CHILD="+store.Dir(), "HALE_FOOTPRINT_CYCLES="+strconv.Itoa(cycles))
	if bin := os.Getenv("HALE_FOOTPRINT_BINARY"); bin != "" {
		// The real daemon, with its production bounds: a report every 15 s at the fastest.
		// It runs until it has sent the cycles, then the parent stops it.
		cmd = exec.Command(bin, "run", "--state-dir", store.Dir(), "--log-level", "warn")
		f.set(func(f *fakeServer) { f.nextReportIn = "15s" })
		go func() {
			for len(f.reportsCopy()) < cycles {
				time.Sleep(100 * time.Millisecond)
			}
			if rss, err := vmRSS(strconv.Itoa(cmd.Process.Pid)); err == nil {
				fmt.Fprintf(&syncWriter{w: &out}, "FOOTPRINT binary=%s cycles=%d steady VmRSS=%.1f MiB\n", bin, cycles, float64(rss)/(1<<20))
			}
			cmd.Process.Signal(syscall.SIGTERM)
		}()
	}
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &out}, &syncWriter{w: &out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Keep the command channel busy too: a lock every few cycles.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("child: %v\n%s", err, outMu.string(&out))
			}
			for _, line := range strings.Split(outMu.string(&out), "\n") {
				if strings.Contains(line, "FOOTPRINT") {
					t.Log(strings.TrimSpace(line))
				}
			}
			t.Logf("FOOTPRINT peak child VmRSS sampled by parent: %.1f MiB; reports received: %d", float64(peak)/(1<<20), len(f.reportsCopy()))
			return
		case <-time.After(50 * time.Millisecond):
			if rss, err := vmRSS(strconv.Itoa(cmd.Process.Pid)); err == nil {
				peak = max(peak, rss)
			}
			if i%20 == 0 {
				f.enqueue(id.DeviceID, Command{ID: fmt.Sprintf("c_lock%d", i), Type: "lock"})
			}
		}
	}
}

func footprintChild(t *testing.T) {
	cycles, _ := strconv.Atoi(os.Getenv("HALE_FOOTPRINT_CYCLES"))
	store, err := state.Open(os.Getenv("HALE_FOOTPRINT_CHILD"))
	if err != nil {
		t.Fatal(err)
	}
	host := HostCollector(collect.WithStateDir(filepath.Clean(store.Dir())))
	var cpu atomic.Int64
	var n atomic.Int64
	var size atomic.Int64
	col := func(ctx context.Context) (*policies.Posture, []CollectorError) {
		before := cpuTime()
		p, errs := host(ctx)
		cpu.Add(int64(cpuTime() - before))
		n.Add(1)
		b, _ := json.Marshal(Report{Nonce: strings.Repeat("n", 22), Sequence: n.Load(), CollectedAt: time.Now(), Posture: p, Errors: errs})
		size.Store(int64(len(b)))
		return p, errs
	}
	var sent atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(store, col, WithRunner(&recordingRunner{}), WithIntervalBounds(10*time.Millisecond, time.Second),
		WithCollectInterval(10*time.Millisecond), WithPollWait(200*time.Millisecond), WithObserver(func(e Event) {
			if e.Kind == "report-sent" && sent.Add(1) >= int64(cycles) {
				cancel()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	start := cpuTime()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	total := cpuTime() - start
	rss, _ := vmRSS("self")
	fmt.Printf("FOOTPRINT cycles=%d collections=%d steady VmRSS=%.1f MiB collect-cpu/cycle=%.1f ms total-cpu/cycle=%.1f ms report=%d bytes\n",
		sent.Load(), n.Load(), float64(rss)/(1<<20), float64(cpu.Load())/float64(n.Load())/1e6,
		float64(total)/float64(sent.Load())/1e6, size.Load())
}
