package auditstream_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/auditstream"
)

// BenchmarkAppendWithSink is one audit append (its own fsynced transaction) with no sink, and
// with a file sink attached that delivers as fast as it can: the ratio is what streaming to the
// SIEM costs the API's writes.
func BenchmarkAppendWithSink(b *testing.B) {
	for _, mode := range []string{"none", "file"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			l, _ := openLog(b, dir)
			if mode == "file" {
				sink, err := auditstream.OpenFile("bench", filepath.Join(dir, "audit.jsonl"))
				if err != nil {
					b.Fatal(err)
				}
				runDefault(b, l, sink)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, err := l.Append(ctx, audittest.Entry(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBurstLag appends a burst of 10,000 entries from 8 writers with a file sink attached
// and measures how far the sink fell behind and how long after the burst it had everything.
func BenchmarkBurstLag(b *testing.B) {
	const burst, writers = 10_000, 8
	for range b.N {
		dir := b.TempDir()
		l, _ := openLog(b, dir)
		sink, err := auditstream.OpenFile("bench", filepath.Join(dir, "audit.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		runDefault(b, l, sink)
		ctx := context.Background()
		var maxLag int64
		done := make(chan struct{})
		go func() { // the lag, sampled every millisecond during the burst
			for {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				size, _ := l.Size(ctx)
				next, _ := l.Delivered(ctx, "bench")
				maxLag = max(maxLag, size-next)
			}
		}()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := w; i < burst; i += writers {
					if _, err := l.Append(ctx, audittest.Entry(i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		burstTook := time.Since(start)
		for {
			next, _ := l.Delivered(ctx, "bench")
			if next == burst {
				break
			}
			time.Sleep(time.Millisecond)
		}
		drain := time.Since(start) - burstTook
		close(done)
		b.ReportMetric(float64(burstTook.Milliseconds()), "burst-ms")
		b.ReportMetric(float64(drain.Milliseconds()), "drain-after-ms")
		b.ReportMetric(float64(maxLag), "max-lag-entries")
	}
}

// runDefault runs a streamer with the server's defaults (a 250 ms poll) until the benchmark ends.
func runDefault(b *testing.B, l *audit.Log, sink auditstream.Sink) {
	s, err := auditstream.New(l, []auditstream.Sink{sink})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
}
