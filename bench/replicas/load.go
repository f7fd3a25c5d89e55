package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/halemdm/hale/bench/internal/fleet"
	"github.com/halemdm/hale/internal/measure"
)

// asker asks a server's access API about devices over keep-alive HTTPS/1.1 connections.
type asker struct {
	base, token string
	client      *http.Client
}

func newAsker(base, token string, roots *x509.CertPool, conns int) *asker {
	return &asker{base: base, token: token, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConns: conns, MaxIdleConnsPerHost: conns}}}
}

// answer is the part of an access answer the harness checks.
type answer struct {
	Allow   bool `json:"allow"`
	Reasons []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

func (a answer) has(code string) bool {
	return slices.ContainsFunc(a.Reasons, func(r struct {
		Code string `json:"code"`
	}) bool {
		return r.Code == code
	})
}

// get sends GET /access/v1/devices/{id} and returns the status and the body.
func (a *asker) get(id string) (int, []byte, error) {
	req, err := http.NewRequest("GET", a.base+"/access/v1/devices/"+id, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// decide returns the device's answer, or an error unless the server answered 200 with one.
func (a *asker) decide(id string) (answer, error) {
	code, b, err := a.get(id)
	if err != nil {
		return answer{}, err
	}
	var ans answer
	if code != http.StatusOK {
		return ans, fmt.Errorf("GET access answer of %s: %d %s", id, code, b)
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return ans, fmt.Errorf("access answer of %s: %w", id, err)
	}
	return ans, nil
}

// waitAllowed waits until the server allows every device in ids.
func (a *asker) waitAllowed(ids []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, id := range ids {
		for {
			ans, err := a.decide(id)
			if err == nil && ans.Allow {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("device %s not allowed on the replica after %v: %+v %v", id, within, ans, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// actor takes the security action (lock or wipe) on the primary.
type actor struct {
	p                   *fleet.Server
	token, action, body string
}

func newActor(p *fleet.Server, security, action string) *actor {
	body := `{"reason":"bench"}`
	if action == "wipe" {
		body = `{"reason":"bench","mode":"selective"}`
	}
	return &actor{p: p, token: security, action: action, body: body}
}

func (a *actor) do(id string) error {
	if code := a.p.Call("POST", "/api/v1/devices/"+id+"/"+a.action, a.token, a.body, nil); code != http.StatusAccepted {
		return fmt.Errorf("%s %s on the primary: %d, want 202", a.action, id, code)
	}
	return nil
}

// measureLag takes the action on each device in turn and measures its round trip and the time
// from its 202 to the replica's first deny for it.
func measureLag(act *actor, ask *asker, ids []string, pollers int) (calls, lags []time.Duration, err error) {
	want := deniedCode(act.action)
	for _, id := range ids {
		start := time.Now()
		if err := act.do(id); err != nil {
			return nil, nil, err
		}
		acked := time.Now()
		calls = append(calls, acked.Sub(start))
		d, err := firstDeny(ask, id, want, acked, pollers, 10*time.Second)
		if err != nil {
			return nil, nil, err
		}
		lags = append(lags, d)
	}
	return calls, lags, nil
}

// firstDeny polls the replica for id with pollers clients in a tight loop and returns the time
// from acked to the first answer that denies the device for want. A deny for any other reason
// (index_stale, say) is an error: it would not measure the action reaching the replica.
func firstDeny(ask *asker, id, want string, acked time.Time, pollers int, within time.Duration) (time.Duration, error) {
	var (
		done  atomic.Bool
		once  sync.Once
		found time.Duration
		ferr  error
		wg    sync.WaitGroup
	)
	finish := func(d time.Duration, err error) {
		once.Do(func() { found, ferr = d, err })
		done.Store(true)
	}
	for range pollers {
		wg.Go(func() {
			for !done.Load() {
				ans, err := ask.decide(id)
				switch {
				case err != nil:
					finish(0, err)
				case !ans.Allow && ans.has(want):
					finish(time.Since(acked), nil)
				case !ans.Allow:
					finish(0, fmt.Errorf("device %s denied on the replica for %+v, want %s", id, ans.Reasons, want))
				case time.Since(acked) > within:
					finish(0, fmt.Errorf("device %s still allowed on the replica %v after the primary's 202", id, within))
				}
			}
		})
	}
	wg.Wait()
	return found, ferr
}

// phase is one measured stretch of load on the replica's access API.
type phase struct {
	Name      string  `json:"name"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"requests_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	// CPU is the process's CPU time (both servers and all clients) over the phase's wall time,
	// in percent of one core.
	CPU      float64 `json:"cpu_percent"`
	FirstErr string  `json:"first_error,omitempty"`

	lat []time.Duration
}

// finish computes the phase's figures from its samples.
func (p *phase) finish() {
	slices.Sort(p.lat)
	p.Requests = int64(len(p.lat)) + p.Errors
	if p.Seconds > 0 {
		p.PerSecond = float64(len(p.lat)) / p.Seconds
	}
	p.P50ms, p.P99ms = measure.Millis(measure.Percentile(p.lat, 0.50)), measure.Millis(measure.Percentile(p.lat, 0.99))
}

// merge is every phase in ps as one.
func merge(name string, ps []phase) phase {
	m := phase{Name: name}
	cpu := 0.0
	for _, p := range ps {
		m.lat = append(m.lat, p.lat...)
		m.Errors += p.Errors
		m.Seconds += p.Seconds
		cpu += p.CPU * p.Seconds
		if m.FirstErr == "" {
			m.FirstErr = p.FirstErr
		}
	}
	m.finish()
	if m.Seconds > 0 {
		m.CPU = cpu / m.Seconds
	}
	return m
}

// load runs conns clients asking about random devices of ids for d and returns what they saw.
func load(ask *asker, ids []string, conns int, d time.Duration, name string) phase {
	var mu sync.Mutex
	p := phase{Name: name}
	cpu0, t0 := measure.ProcessCPU(), time.Now()
	deadline := t0.Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var lat []time.Duration
			var errs int64
			var first string
			for time.Now().Before(deadline) {
				start := time.Now()
				code, b, err := ask.get(ids[mrand.IntN(len(ids))])
				switch {
				case err != nil:
					errs++
					first = cmp(first, err.Error())
				case code != http.StatusOK:
					errs++
					first = cmp(first, fmt.Sprintf("%d %s", code, b))
				default:
					lat = append(lat, time.Since(start))
				}
			}
			mu.Lock()
			p.lat, p.Errors = append(p.lat, lat...), p.Errors+errs
			p.FirstErr = cmp(p.FirstErr, first)
			mu.Unlock()
		})
	}
	wg.Wait()
	p.Seconds = time.Since(t0).Seconds()
	p.CPU = 100 * (measure.ProcessCPU() - cpu0).Seconds() / p.Seconds
	p.finish()
	return p
}

// cmp is a if set, else b.
func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// busyLoad is the primary's work during a busy phase: a paced stream of actions on devices
// not yet acted on, and a paced stream of posture reports from devices still active.
type busyLoad struct {
	act                *actor
	victims            []string
	reporters          []*fleet.Agent
	locksPS, reportsPS float64

	nextVictim, nextReporter atomic.Int64
	locks, reports           atomic.Int64

	mu    sync.Mutex
	calls []time.Duration // the actions' round trips on the busy primary
}

// run keeps the streams going (no actions when locksPS is 0) until ctx is done, then waits for the calls in flight.
func (b *busyLoad) run(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	fail := func(err error) { once.Do(func() { ferr = err }) }
	if b.locksPS > 0 {
		b.paceActions(ctx, &wg, fail)
	}
	pace(ctx, &wg, b.reportsPS, func() {
		i := b.nextReporter.Add(1) - 1
		b.reporters[i%int64(len(b.reporters))].Report()
		b.reports.Add(1)
	})
	wg.Wait()
	return ferr
}

// paceActions is the stream of actions on victims.
func (b *busyLoad) paceActions(ctx context.Context, wg *sync.WaitGroup, fail func(error)) {
	pace(ctx, wg, b.locksPS, func() {
		i := b.nextVictim.Add(1) - 1
		if i >= int64(len(b.victims)) {
			fail(fmt.Errorf("busy phases ran out of devices to %s (%d): raise -devices", b.act.action, len(b.victims)))
			return
		}
		start := time.Now()
		if err := b.act.do(b.victims[i]); err != nil {
			fail(err)
			return
		}
		took := time.Since(start)
		b.mu.Lock()
		b.calls = append(b.calls, took)
		b.mu.Unlock()
		b.locks.Add(1)
	})
}

// pace calls fn rate times a second until ctx is done, from enough workers that calls of up to
// 200 ms keep the pace; ticks that find every worker busy are skipped, so the achieved rate
// (counted by fn) can fall short of rate but never exceed it.
func pace(ctx context.Context, wg *sync.WaitGroup, rate float64, fn func()) {
	workers := int(rate/5) + 1
	ticks := make(chan struct{}, workers)
	for range workers {
		wg.Go(func() {
			for range ticks {
				fn()
			}
		})
	}
	wg.Go(func() {
		defer close(ticks)
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case ticks <- struct{}{}:
				default:
				}
			}
		}
	})
}

// throughput warms the replica up, then runs the idle and busy phases in turn.
func throughput(r *result, ask *asker, ids []string, busy *busyLoad, cfg config) error {
	load(ask, ids, cfg.Conns, min(time.Second, cfg.Duration), "warmup")
	var idle, loaded []phase
	busySecs := 0.0
	for i := range cfg.Rounds {
		p := load(ask, ids, cfg.Conns, cfg.Duration, fmt.Sprintf("idle-%d", i+1))
		idle = append(idle, p)
		r.Phases = append(r.Phases, p)

		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- busy.run(ctx) }()
		p = load(ask, ids, cfg.Conns, cfg.Duration, fmt.Sprintf("busy-%d", i+1))
		cancel()
		if err := <-errc; err != nil {
			return err
		}
		busySecs += p.Seconds
		loaded = append(loaded, p)
		r.Phases = append(r.Phases, p)
	}
	r.Idle, r.Busy = merge("idle", idle), merge("busy", loaded)
	r.BusyLocksPS, r.BusyRepsPS = float64(busy.locks.Load())/busySecs, float64(busy.reports.Load())/busySecs
	r.BusyCall = lagOf(busy.calls)
	return nil
}

func report(w io.Writer, r result) {
	fmt.Fprintf(w, "%-30s %7s %9s %9s %9s %9s\n", "measure", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms")
	for _, row := range []struct {
		name string
		l    lag
	}{{r.Action + " call (baseline)", r.Call}, {r.Action + " on primary -> replica deny", r.Lag}, {"asked -> replica deny", r.AskToDeny},
		{r.Action + " call, reports flowing", r.BusyLagCall}, {r.Action + " -> deny, reports flowing", r.BusyLag},
		{"asked -> deny, reports flowing", r.BusyAskToDeny}} {
		fmt.Fprintf(w, "%-30s %7d %9.2f %9.2f %9.2f %9.2f\n", row.name, row.l.N, row.l.P50ms, row.l.P90ms, row.l.P99ms, row.l.Maxms)
	}
	verdict := "PASS"
	if r.Lag.P99ms >= float64(goalLag.Milliseconds()) {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "replica deny p99 / %s call p99: %.2fx; goal p99 < %d ms: %s\n",
		r.Action, r.Lag.P99ms/max(r.Call.P99ms, 1e-9), goalLag.Milliseconds(), verdict)
	if r.BusyLag.N > 0 {
		verdict = "PASS"
		if r.BusyLag.P99ms >= float64(goalLag.Milliseconds()) {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "reports flowing (%.1f/s): replica deny p99 / %s call p99: %.2fx; goal p99 < %d ms: %s\n",
			r.BusyLagRepsPS, r.Action, r.BusyLag.P99ms/max(r.BusyLagCall.P99ms, 1e-9), goalLag.Milliseconds(), verdict)
	}
	fmt.Fprintf(w, "\n%d keep-alive clients on the replica's GET /access/v1/devices/{id}, random devices of %d\n", r.Conns, r.Devices)
	fmt.Fprintf(w, "%-10s %9s %7s %8s %10s %8s %8s %6s\n", "phase", "requests", "errors", "seconds", "req/s", "p50 ms", "p99 ms", "cpu%")
	for _, p := range append(r.Phases, r.Idle, r.Busy) {
		fmt.Fprintf(w, "%-10s %9d %7d %8.2f %10.0f %8.2f %8.2f %6.0f\n", p.Name, p.Requests, p.Errors, p.Seconds, p.PerSecond, p.P50ms, p.P99ms, p.CPU)
	}
	fmt.Fprintf(w, "primary during busy phases: %.1f %ss/s (asked %.0f/s; call p50 %.1f ms, p99 %.1f ms), %.1f agent reports/s (asked %.0f/s)\n",
		r.BusyLocksPS, r.Action, r.AskedLocksPS, r.BusyCall.P50ms, r.BusyCall.P99ms, r.BusyRepsPS, r.AskedRepsPS)
	fmt.Fprintf(w, "busy/idle: throughput %.2fx, p99 %.2fx; errors %d idle, %d busy\n",
		r.Busy.PerSecond/max(r.Idle.PerSecond, 1e-9), r.Busy.P99ms/max(r.Idle.P99ms, 1e-9), r.Idle.Errors, r.Busy.Errors)
	for _, p := range []phase{r.Idle, r.Busy} {
		if p.FirstErr != "" {
			fmt.Fprintf(w, "first %s error: %s\n", p.Name, p.FirstErr)
		}
	}
}
