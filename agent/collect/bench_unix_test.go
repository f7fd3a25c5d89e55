//go:build unix

package collect

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the user+system CPU this process and its waited-for children have used, so that
// the tools a collection runs are counted too.
func cpuTime(b *testing.B) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// BenchmarkCollect measures one full collection cycle on the real machine; cpu-ns/op is the
// CPU it costs, external tools included.
func BenchmarkCollect(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		Collect(ctx)
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}
