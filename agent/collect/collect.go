// Package collect gathers a device's security posture on the machine the agent runs on.
//
// Each Collector observes a few facts (disk encryption, screen lock, firewall, ...) and returns
// them as claims with the agent's provenance and the time they were observed. Collect runs every
// collector concurrently, each under its own timeout and panic guard, and merges what they found
// into one policies.Posture. A fact a collector could not determine stays nil (unknown), so the
// server's evaluation fails closed on it; a collector that fails, hangs or panics costs only its
// own claims and adds an Error, never the agent.
//
// Collectors never read the host filesystem directly: every read goes through Env, which resolves
// paths (symlinks included) inside an injected root, and every external tool runs through Env's
// Runner by absolute path. That is what lets the collectors be tested against recorded fixture
// trees and tool outputs under testdata/.
package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/halemdm/hale/policies"
)

// DefaultTimeout bounds one collector when neither the collector nor WithTimeout says otherwise.
const DefaultTimeout = 10 * time.Second

// Partial is the part of a posture one collector observed: only the claims it owns are set.
// Platform and ReportedAt are ignored; Collect sets them.
type Partial = policies.Posture

// Collector observes some posture claims.
type Collector interface {
	// Name identifies the collector in errors and logs ("linux-disk").
	Name() string
	// Collect observes its claims through env. It must honour ctx and leave claims it could not
	// determine nil; the error says why they are unknown.
	Collect(ctx context.Context, env *Env) (Partial, error)
}

// TimeoutCollector is a Collector that needs a different time budget than the default, for
// example one that asks the package manager about pending updates.
type TimeoutCollector interface {
	Collector
	Timeout() time.Duration
}

// Error is one collector's failure. Its claims are unknown in the posture.
type Error struct {
	Collector string
	Err       error
}

// Error implements error.
func (e Error) Error() string { return e.Collector + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e Error) Unwrap() error { return e.Err }

// MarshalJSON writes the error as {"collector","error"} so it can be reported alongside a posture.
func (e Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Collector string `json:"collector"`
		Error     string `json:"error"`
	}{e.Collector, e.Err.Error()})
}

// ErrTimeout is reported for a collector that did not finish within its timeout.
var ErrTimeout = errors.New("collector timed out; its claims are unknown")

// PanicError is reported for a collector that panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string {
	return fmt.Sprintf("collector panicked (a bug; please report it with the agent log): %v", p.Value)
}

type config struct {
	env        Env
	collectors []Collector
	timeout    time.Duration
	platform   policies.Platform
	logger     *slog.Logger
}

// Option configures Collect.
type Option func(*config)

// WithRoot makes every file read resolve inside dir instead of "/". Tests point it at a fixture
// tree; `mdmagent posture --root DIR` inspects a mounted image.
func WithRoot(dir string) Option { return func(c *config) { c.env.Root = dir } }

// WithRunner sets how external tools are run. The default is an ExecRunner.
func WithRunner(r Runner) Option { return func(c *config) { c.env.Runner = r } }

// WithClock sets the clock that stamps each claim's observation time.
func WithClock(now func() time.Time) Option { return func(c *config) { c.env.Now = now } }

// WithAgentPaths names the agent's own binary and configuration file, checked for tampering.
// An empty binary defaults to the running executable.
func WithAgentPaths(binary, configFile string) Option {
	return func(c *config) { c.env.AgentBinary, c.env.AgentConfig = binary, configFile }
}

// WithStateDir names the agent's state directory (device key, certificate), checked for being
// writable by anyone but root.
func WithStateDir(dir string) Option { return func(c *config) { c.env.StateDir = dir } }

// WithCollectors replaces the platform's default collectors.
func WithCollectors(cs ...Collector) Option { return func(c *config) { c.collectors = cs } }

// WithTimeout sets the timeout of collectors that do not choose their own.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithPlatform overrides the platform stamped on the posture (default: the running OS).
func WithPlatform(p policies.Platform) Option { return func(c *config) { c.platform = p } }

// WithLogger sets the logger for collector failures.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Collect runs the collectors concurrently and merges their claims into a posture stamped with
// the platform and the collection time. It always returns a posture; the errors say which
// collectors failed and therefore which claims are unknown. When two collectors set the same
// claim, the one earlier in the collector list wins.
func Collect(ctx context.Context, opts ...Option) (*policies.Posture, []Error) {
	c := &config{
		collectors: DefaultCollectors(),
		timeout:    DefaultTimeout,
		platform:   hostPlatform(),
		logger:     slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(c)
	}
	env := c.env.withDefaults()

	type result struct {
		p   Partial
		err error
	}
	results := make([]result, len(c.collectors))
	var wg sync.WaitGroup
	for i, col := range c.collectors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := runOne(ctx, col, env, c.timeout)
			results[i] = result{p, err}
		}()
	}
	wg.Wait()

	p := &policies.Posture{Platform: c.platform, ReportedAt: env.Now().UTC()}
	var errs []Error
	for i, r := range results {
		if r.err != nil {
			name := c.collectors[i].Name()
			errs = append(errs, Error{Collector: name, Err: r.err})
			c.logger.Warn("posture collector failed", "collector", name, "err", r.err)
		}
		mergeClaims(p, &r.p)
	}
	return p, errs
}

// runOne runs col in its own goroutine so that a collector that ignores ctx and blocks forever
// still lets Collect return at the deadline; the stray goroutine's result is dropped.
func runOne(ctx context.Context, col Collector, env *Env, timeout time.Duration) (Partial, error) {
	if tc, ok := col.(TimeoutCollector); ok && tc.Timeout() > 0 {
		timeout = tc.Timeout()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		p   Partial
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- result{err: &PanicError{Value: v, Stack: debug.Stack()}}
			}
		}()
		p, err := col.Collect(ctx, env)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.p, r.err
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			return Partial{}, fmt.Errorf("%w after %s", ErrTimeout, timeout)
		}
		return Partial{}, ctx.Err()
	}
}

// mergeClaims copies every claim set in src and still unknown in dst. Reflection keeps this
// correct as claims are added to policies.Posture.
func mergeClaims(dst, src *policies.Posture) {
	dv, sv := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range dv.NumField() {
		df, sf := dv.Field(i), sv.Field(i)
		if sf.Kind() == reflect.Pointer && !sf.IsNil() && df.IsNil() {
			df.Set(sf)
		}
	}
}

// hostPlatform maps the running OS to a policies.Platform.
func hostPlatform() policies.Platform {
	switch runtime.GOOS {
	case "darwin":
		return policies.PlatformMacOS
	case "windows":
		return policies.PlatformWindows
	case "linux":
		return policies.PlatformLinux
	default:
		return policies.Platform(runtime.GOOS)
	}
}

// observe returns a claim of v observed by the agent now.
func observe[T any](env *Env, v T) *policies.Claim[T] {
	return policies.Observe(v, policies.ProvenanceAgent, env.Now())
}

// collectorFunc adapts a function to a Collector.
type collectorFunc struct {
	name    string
	timeout time.Duration
	fn      func(context.Context, *Env) (Partial, error)
}

func (c collectorFunc) Name() string           { return c.name }
func (c collectorFunc) Timeout() time.Duration { return c.timeout }
func (c collectorFunc) Collect(ctx context.Context, env *Env) (Partial, error) {
	return c.fn(ctx, env)
}
