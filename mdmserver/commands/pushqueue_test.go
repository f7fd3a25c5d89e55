package commands_test

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/push"
	"github.com/micromdm/nanomdm/push/nanopush"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/mdmserver/commands"
)

// queueFunc is nanomdm's command queue as a function; these tests are about pushes, not queues.
type queueFunc func(ids []string) error

func (f queueFunc) EnqueueCommand(_ context.Context, ids []string, _ *mdm.Command) (map[string]error, error) {
	return nil, f(ids)
}

var anyQueue = queueFunc(func([]string) error { return nil })

// runPushes starts d.RunPushes until the test ends.
func runPushes(t testing.TB, d *commands.Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.RunPushes(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Enqueue pushes by itself until RunPushes has started; wait for that.
	for d.PushQueueRunning() == false {
		time.Sleep(time.Millisecond)
	}
}

// waitState waits until the command's record reaches state.
func waitState(t *testing.T, s *commands.Service, eid, uuid string, want commands.State) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		rec, err := s.Get(context.Background(), eid, uuid)
		if err == nil && rec.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s of %s: %+v %v, want state %s", uuid, eid, rec, err, want)
		}
	}
}

// A device with several commands queued while it waits for its push is pushed once for all
// of them, and every one of them is recorded as pushed.
func TestEnqueueCoalescesPushesPerDevice(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	var (
		mu      sync.Mutex
		pushes  = map[string]int{}
		started = make(chan string, 10)
		release = make(chan struct{})
	)
	pusher := pusherFunc(func(ids []string) (map[string]*push.Response, error) {
		started <- ids[0]
		<-release
		mu.Lock()
		pushes[ids[0]]++
		mu.Unlock()
		return map[string]*push.Response{ids[0]: {Id: "apns"}}, nil
	})
	d := commands.NewDispatcher(s, anyQueue, pusher, commands.WithPushConcurrency(1))
	runPushes(t, d)

	first, err := d.Enqueue(ctx, "A", commands.Command{RequestType: "ProfileList"}, "test")
	if err != nil || first.State != commands.StateQueued {
		t.Fatalf("Enqueue = %+v, %v; want a queued record", first, err)
	}
	<-started // the one worker is pushing A; what follows waits
	var later []string
	for _, eid := range []string{"A", "A", "B", "A"} {
		rec, err := d.Enqueue(ctx, eid, commands.Command{RequestType: "Restrictions"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		later = append(later, eid+"/"+rec.UUID)
	}
	close(release)
	for range 2 {
		<-started
	}
	waitState(t, s, "A", first.UUID, commands.StatePushed)
	for _, k := range later {
		waitState(t, s, k[:1], k[2:], commands.StatePushed)
	}
	mu.Lock()
	defer mu.Unlock()
	if pushes["A"] != 2 || pushes["B"] != 1 {
		t.Fatalf("pushes = %v, want A twice (before and after its later commands) and B once", pushes)
	}
}

// Without RunPushes, Enqueue pushes by itself, as Send does: a command never waits for a
// push that nobody will send.
func TestEnqueueWithoutRunnerPushesItself(t *testing.T) {
	s := newService(t)
	d := commands.NewDispatcher(s, anyQueue, pusherFunc(func(ids []string) (map[string]*push.Response, error) {
		return map[string]*push.Response{ids[0]: {Id: "apns"}}, nil
	}))
	rec, err := d.Enqueue(context.Background(), "A", commands.Command{RequestType: "ProfileList"}, "test")
	if err != nil || rec.State != commands.StatePushed {
		t.Fatalf("Enqueue = %+v, %v; want pushed", rec, err)
	}
}

// RunPushes keeps exactly the configured number of pushes in flight.
func TestRunPushesConcurrency(t *testing.T) {
	const n = 8
	s := newService(t)
	var inFlight, peak atomic.Int32
	all := make(chan struct{})
	var once sync.Once
	d := commands.NewDispatcher(s, anyQueue, pusherFunc(func(ids []string) (map[string]*push.Response, error) {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		if now == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second): // fewer than n ever in flight: the test fails below
		}
		return map[string]*push.Response{ids[0]: {Id: "apns"}}, nil
	}), commands.WithPushConcurrency(n))
	runPushes(t, d)
	for i := range 4 * n {
		if _, err := d.Enqueue(context.Background(), fmt.Sprint("D", i), commands.Command{RequestType: "ProfileList"}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(5 * time.Second):
		t.Fatalf("only %d pushes were ever in flight at once, want %d", peak.Load(), n)
	}
	for i := range 4 * n {
		eid := fmt.Sprint("D", i)
		list, _ := s.List(context.Background(), eid)
		waitState(t, s, eid, list[0].UUID, commands.StatePushed)
	}
	if p := peak.Load(); p > n {
		t.Fatalf("%d pushes in flight at once, more than the %d configured", p, n)
	}
}

// providerPusher is nanopush's APNs provider behind push.Pusher, with one device token per
// enrollment ID: the real HTTP/2 push path without nanomdm's store lookups.
type providerPusher struct {
	p      push.PushProvider
	tokens map[string][]byte
}

func (pp providerPusher) Push(ctx context.Context, ids []string) (map[string]*push.Response, error) {
	infos := make([]*mdm.Push, len(ids))
	for i, id := range ids {
		infos[i] = &mdm.Push{Token: pp.tokens[id], Topic: "com.apple.mgmt.External.bench", PushMagic: "magic"}
	}
	resps, err := pp.p.Push(ctx, infos)
	out := make(map[string]*push.Response, len(ids))
	for _, id := range ids {
		out[id] = resps[hex.EncodeToString(pp.tokens[id])]
	}
	return out, err
}

// BenchmarkPushRate measures APNs pushes per second to a fake APNs that answers after 50 ms,
// as Apple does across the internet: one device after another (how a policy change was pushed
// before: Send waits for each push) against Enqueue with RunPushes at the default concurrency.
func BenchmarkPushRate(b *testing.B) {
	apns := fakeapns.New(fakeapns.WithLatency(50 * time.Millisecond))
	b.Cleanup(apns.Close)
	certPEM, keyPEM, err := fakeapns.GeneratePushCert("com.apple.mgmt.External.bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	provider, err := nanopush.NewFactory(nanopush.WithNewClient(apns.NewClient)).NewPushProvider(&cert)
	if err != nil {
		b.Fatal(err)
	}
	const devices = 2000
	pp := providerPusher{p: provider, tokens: map[string][]byte{}}
	for i := range devices {
		tok := make([]byte, 32)
		copy(tok, fmt.Sprintf("device-%06d", i))
		pp.tokens[fmt.Sprint("D", i)] = tok
	}
	for _, mode := range []string{"sequential", "queued"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			s := newService(b)
			var d *commands.Dispatcher
			var sent atomic.Int64
			d = commands.NewDispatcher(s, anyQueue, pusherFunc(func(ids []string) (map[string]*push.Response, error) {
				sent.Add(1)
				return pp.Push(ctx, ids)
			}))
			n := devices / 10 // 20 pushes/s one at a time: keep the sequential run short
			if mode == "queued" {
				runPushes(b, d)
				n = devices
			}
			// A policy change queues from several goroutines (DeliverPolicies' workers); one
			// after the other is how it was.
			producers := 1
			if mode == "queued" {
				producers = commands.DeliveryWorkers
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				sent.Store(0)
				var wg sync.WaitGroup
				for p := range producers {
					wg.Go(func() {
						for i := p; i < n; i += producers {
							var err error
							if mode == "queued" {
								_, err = d.Enqueue(ctx, fmt.Sprint("D", i), commands.Command{RequestType: "ProfileList"}, "bench")
							} else {
								_, err = d.Send(ctx, fmt.Sprint("D", i), commands.Command{RequestType: "ProfileList"}, "bench")
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				for d.PushQueueLen() > 0 || sent.Load() < int64(n) {
					time.Sleep(time.Millisecond)
				}
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "pushes/s")
		})
	}
}
