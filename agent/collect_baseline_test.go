//go:build linux

package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/collect"
)

// BenchmarkCollectCycleBaseline is BenchmarkCollectCycle's baseline: the I/O of one Linux
// collection on this machine with none of the work done on it. It opens and reads every file
// and directory the Linux collectors name (missing ones cost the failed open, as they do for
// the collectors), stats the agent's own files, and runs exactly the tool command lines a real
// collection ran in this run, through the same runner, discarding their output: no parsing, no
// merging, no JSON. CollectCycle/this is what the collectors add to the least any collector of
// the same facts must do. The file list follows agent/collect/linux.go; it reads a few files a
// collection skips (both os-release paths, every PAM stack) and skips the block-device walk,
// which costs a few stats.
func BenchmarkCollectCycleBaseline(b *testing.B) {
	state := b.TempDir()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// One real collection, to learn which tools this machine makes the collectors run.
	rec := &recordRunner{r: &collect.ExecRunner{}}
	HostCollector(collect.WithStateDir(state), collect.WithRunner(rec))(context.Background())
	if len(rec.calls) == 0 {
		b.Fatal("the collection ran no tool; the baseline would leave out their cost")
	}
	files, dirs := baselinePaths()
	stats := []string{"/var/lib/dpkg/status", "/var/run/reboot-required", "/sys/firmware/efi",
		exe, filepath.Dir(exe), state}
	runner := &collect.ExecRunner{}
	ctx := context.Background()
	var cpu time.Duration
	for b.Loop() {
		before := cpuTime()
		for _, f := range files {
			_, _ = os.ReadFile(f)
		}
		for _, d := range dirs {
			_, _ = os.ReadDir(d)
		}
		for _, s := range stats {
			_, _ = os.Stat(s)
		}
		var wg sync.WaitGroup // the collectors run concurrently, and so do their tools
		for _, c := range rec.calls {
			wg.Go(func() { _, _ = runner.Run(ctx, c[0], c[1:]...) })
		}
		wg.Wait()
		cpu += cpuTime() - before
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/cycle")
	b.ReportMetric(float64(len(files)), "files")
	b.ReportMetric(float64(len(rec.calls)), "tools")
}

// baselinePaths expands the files and directories the Linux collectors read.
func baselinePaths() (files, dirs []string) {
	const efiGlobal = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
	files = []string{
		"/etc/os-release", "/usr/lib/os-release", "/proc/sys/kernel/osrelease", "/proc/self/mountinfo",
		"/proc/swaps", "/etc/passwd", "/etc/shadow", "/etc/xdg/kscreenlockerrc",
		"/etc/pam.d/common-password", "/etc/pam.d/system-auth", "/etc/pam.d/passwd",
		"/etc/security/pwquality.conf", "/etc/ufw/ufw.conf", "/sys/kernel/security/lockdown",
		"/proc/sys/kernel/tainted", "/sys/firmware/efi/efivars/SecureBoot-" + efiGlobal,
	}
	dirs = []string{"/sys/block", "/run/systemd/sessions", "/etc/dconf/db", "/etc/security/pwquality.conf.d"}
	for _, g := range []string{"/sys/block/*/dm/name", "/sys/block/*/dm/uuid", "/run/systemd/sessions/*",
		"/etc/dconf/db/*/locks", "/etc/dconf/db/*/locks/*", "/etc/dconf/db/*/*", "/etc/security/pwquality.conf.d/*.conf"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	slices.Sort(files)
	return slices.Compact(files), dirs
}

// recordRunner runs tools through r and records each command line.
type recordRunner struct {
	r     collect.Runner
	mu    sync.Mutex
	calls [][]string
}

func (rr *recordRunner) Run(ctx context.Context, path string, args ...string) (collect.Output, error) {
	rr.mu.Lock()
	rr.calls = append(rr.calls, append([]string{path}, args...))
	rr.mu.Unlock()
	return rr.r.Run(ctx, path, args...)
}
