package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/rootpin"
	"github.com/halemdm/hale/policies"
)

// Collector gathers the device's posture. It must honour ctx; the errors say which facts are
// unknown. collect.Collect fits it with a small adapter.
type Collector func(ctx context.Context) (*policies.Posture, []CollectorError)

// ErrWiped is returned by Run after a selective wipe removed the managed data and the agent's
// own key and state: the agent must exit successfully and not be restarted.
var ErrWiped = errors.New("agent: selectively wiped; the device key and state are gone")

// Agent is an enrolled agent: it reports posture, runs commands and renews its certificate.
type Agent struct {
	store    *state.Store
	id       *state.Identity
	key      *ecdsa.PrivateKey
	cert     atomic.Pointer[tls.Certificate]
	client   *client
	collect  Collector
	runner   Runner
	log      *slog.Logger
	lockArgv []string

	wipeRoots      []string
	homes          func() []string // the local users' home directories, for "~/" wipe paths
	minInterval    time.Duration
	maxInterval    time.Duration
	collectEvery   time.Duration
	requestTimeout time.Duration
	pollWait       time.Duration
	pollMinGap     time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	wipeReportFor  time.Duration
	observer       func(Event)
	policy         atomic.Pointer[storedPolicy]
	notifier       Notifier   // warns the user of a grace period (notify.go)
	grace          graceState // what the user was told; the report loop's alone
	// flushNeeded is set while the journal may hold results the server has not acknowledged,
	// so the poll loop reads the journal only then.
	flushNeeded atomic.Bool

	seqMu sync.Mutex
	seq   uint64
}

// Option configures an Agent.
type Option func(*Agent)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *Agent) { a.log = l } }

// WithRunner sets how the lock command is run (tests record the call).
func WithRunner(r Runner) Option { return func(a *Agent) { a.runner = r } }

// WithLockCommand replaces the platform's screen-lock command line.
func WithLockCommand(argv ...string) Option { return func(a *Agent) { a.lockArgv = argv } }

// WithWipeRoots sets the directories under which a selective wipe may remove data. Nothing
// outside them, and never a root itself, is removed whatever the server asks.
func WithWipeRoots(roots ...string) Option { return func(a *Agent) { a.wipeRoots = roots } }

// WithIntervalBounds bounds the server-told report interval (default 15 s .. 1 h).
func WithIntervalBounds(min, max time.Duration) Option {
	return func(a *Agent) { a.minInterval, a.maxInterval = min, max }
}

// WithCollectInterval sets how often posture is collected to notice changes between reports
// (default 60 s, never more often than the lower interval bound allows).
func WithCollectInterval(d time.Duration) Option { return func(a *Agent) { a.collectEvery = d } }

// WithRequestTimeout bounds every call but the long poll (default 30 s).
func WithRequestTimeout(d time.Duration) Option { return func(a *Agent) { a.requestTimeout = d } }

// WithPollWait sets the long-poll wait asked of the server (default 30 s).
func WithPollWait(d time.Duration) Option { return func(a *Agent) { a.pollWait = d } }

// WithBackoff sets the first and the longest retry delay after a failure (default 5 s, 5 min).
func WithBackoff(base, max time.Duration) Option {
	return func(a *Agent) { a.backoffBase, a.backoffMax = base, max }
}

// WithWipeReportWindow bounds how long a wiped agent keeps trying to deliver the wipe result
// before it removes its key anyway (default 2 min).
func WithWipeReportWindow(d time.Duration) Option { return func(a *Agent) { a.wipeReportFor = d } }

// Event is something the agent did, for observers (metrics, tests).
type Event struct {
	Kind string // report-sent, report-failed, command-done, renewed, renew-failed, poll-failed
	Err  error
	ID   string
}

// WithObserver calls fn after each notable event. fn must not block.
func WithObserver(fn func(Event)) Option { return func(a *Agent) { a.observer = fn } }

// New loads an enrolled agent from store.
func New(store *state.Store, collect Collector, opts ...Option) (*Agent, error) {
	if collect == nil {
		return nil, errors.New("agent: a posture collector is required")
	}
	a := &Agent{
		store:          store,
		collect:        collect,
		runner:         ExecRunner{},
		log:            slog.New(slog.DiscardHandler),
		lockArgv:       defaultLockCommand(runtime.GOOS),
		wipeRoots:      DefaultWipeRoots(runtime.GOOS),
		homes:          func() []string { return localHomesFor(runtime.GOOS) },
		minInterval:    15 * time.Second,
		maxInterval:    time.Hour,
		collectEvery:   60 * time.Second,
		requestTimeout: 30 * time.Second,
		pollWait:       30 * time.Second,
		pollMinGap:     time.Second,
		backoffBase:    5 * time.Second,
		backoffMax:     5 * time.Minute,
		wipeReportFor:  2 * time.Minute,
	}
	for _, o := range opts {
		o(a)
	}
	if a.notifier == nil {
		a.notifier = defaultNotifier(runtime.GOOS, a.runner)
	}
	for _, r := range a.wipeRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) == filepath.VolumeName(r)+string(filepath.Separator) {
			return nil, fmt.Errorf("agent: wipe root %q must be an absolute directory other than the filesystem root", r)
		}
	}
	if a.pollMinGap > a.minInterval {
		a.pollMinGap = a.minInterval
	}
	id, err := store.LoadIdentity()
	if err != nil {
		return nil, err
	}
	a.id = id
	if a.key, err = store.LoadKey(); err != nil {
		return nil, err
	}
	chainPEM, err := store.ReadFile(state.CertFile)
	if err != nil {
		return nil, fmt.Errorf("agent: reading the device certificate: %w", err)
	}
	certs, err := state.ParseChain(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: the device certificate is corrupt: %w", err)
	}
	if _, err := checkChain(chainPEM, a.key, certs[0].NotBefore); err != nil {
		// An expired certificate is still loaded: the agent tries to renew it and reports why not.
		return nil, fmt.Errorf("agent: the device certificate does not match the device key: %w", err)
	}
	a.cert.Store(tlsCertificate(certs, a.key))
	caPEM, err := store.ReadFile(state.CAFile)
	if err != nil {
		return nil, fmt.Errorf("agent: reading the pinned CA: %w", err)
	}
	ca, err := rootpin.ParseRoot(caPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: the pinned CA is corrupt: %w", err)
	}
	if rootpin.Fingerprint(ca) != id.CAFingerprint {
		return nil, errors.New("agent: the pinned CA file does not match the fingerprint recorded at enrollment; re-enroll with --force")
	}
	if a.seq, err = store.LoadSequence(); err != nil {
		return nil, err
	}
	a.client = newClient(id.ServerURL, pinnedTLS(ca, a.cert.Load))
	a.loadPolicy()
	a.flushNeeded.Store(true)
	return a, nil
}

// DeviceID returns the enrolled device ID.
func (a *Agent) DeviceID() string { return a.id.DeviceID }

// Certificate returns the current client certificate's leaf.
func (a *Agent) Certificate() *tls.Certificate { return a.cert.Load() }

// Run reports, polls for commands and renews the certificate until ctx ends (returning nil) or
// a selective wipe completes (returning ErrWiped, after the key and state are removed). Server
// failures never end it: every loop backs off and tries again.
func (a *Agent) Run(ctx context.Context) error {
	defer a.client.tr.CloseIdleConnections()
	// A wipe that finished before a crash or restart is completed first.
	if err := a.resumeJournal(ctx); errors.Is(err, errWipeDone) {
		return a.finishWipe()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wiped := make(chan struct{})
	wg.Go(func() { a.reportLoop(ctx) })
	wg.Go(func() { a.renewLoop(ctx) })
	wg.Go(func() {
		if errors.Is(a.commandLoop(ctx), errWipeDone) {
			close(wiped)
		}
	})
	select {
	case <-ctx.Done():
		wg.Wait()
		return nil
	case <-wiped:
		cancel()
		wg.Wait()
		return a.finishWipe()
	}
}

// finishWipe removes the key and the state directory. It runs only after every loop stopped,
// so nothing writes into the directory while it goes.
func (a *Agent) finishWipe() error {
	if err := a.store.Purge(); err != nil {
		return fmt.Errorf("agent: selective wipe removed the managed data but not the agent state: %w", err)
	}
	a.log.Warn("selective wipe complete: device key and state removed; the agent stops")
	return ErrWiped
}

func (a *Agent) emit(e Event) {
	if a.observer != nil {
		a.observer(e)
	}
}

// backoff returns the delay before retry n (1-based): exponential from backoffBase up to
// backoffMax, with full jitter so a fleet does not retry in lockstep after an outage.
func (a *Agent) backoff(n int) time.Duration {
	d := a.backoffBase
	for i := 1; i < n && d < a.backoffMax; i++ {
		d *= 2
	}
	d = min(d, a.backoffMax)
	return d/2 + rand.N(d/2+1)
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/10 + rand.N(d/5+1)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// clampInterval bounds a server-told interval; an absent one keeps cur.
func (a *Agent) clampInterval(s string, cur time.Duration) time.Duration {
	d, err := time.ParseDuration(s)
	if s == "" || err != nil || d <= 0 {
		d = cur
	}
	return min(max(d, a.minInterval), a.maxInterval)
}
