// Package gracewarn warns before a device is blocked: when a device falls out of compliance
// and enters its grace period, and again a policy-set time (grace.warn_before) before that
// period ends, it tells the messaging backends by a device-compliance-change Security Event
// Token whose reason_code is grace_started or grace_ending and whose grace_until is the
// deadline (Hale's extension members, posture.CAEPEvent). These are notices: the device is
// still allowed, and a receiver keeps its tokens valid. The agent learns the same from its
// report answers (agentapi) and shows a desktop notification.
//
// The second warning is a timer here, re-armed from the index at start; it fires at the warn
// time on the engine's clock and checks that the same grace period is still running.
package gracewarn

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// Decisions reads a device's current decision (an *access.Index).
type Decisions interface {
	Decision(deviceID string) *access.Decision
}

// Emitter commits events to the outbox (an *events.Transmitter).
type Emitter interface {
	Emit(ctx context.Context, evs ...events.Event) error
}

// WarnBefore is how long before grace ends the named policy warns (zero: only at its start).
type WarnBefore func(ctx context.Context, policyName string) time.Duration

// Warner turns the compliance engine's changes into grace warnings.
type Warner struct {
	decisions  Decisions
	events     Emitter
	warnBefore WarnBefore
	log        *slog.Logger
	now        func() time.Time
	afterFunc  func(time.Duration, func()) func() bool

	mu     sync.Mutex
	timers map[string]armed // device ID -> its grace_ending warning
	// following marks a Warner that arms no timers: of several servers on one database, only the
	// one running the background work sends grace_ending warnings (Lead, Follow).
	following bool

	// Warnings of devices entering grace are queued and committed by one goroutine, many at a
	// time: a policy change that puts the fleet into grace runs its re-evaluation pass without
	// waiting for a commit per device.
	qmu     sync.Mutex
	queue   []events.Event
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

// maxBatch bounds the warnings one commit carries.
const maxBatch = 1000

type armed struct {
	until time.Time
	stop  func() bool
}

// Option configures a Warner.
type Option func(*Warner)

// WithClock sets the clock (the compliance engine's).
func WithClock(now func() time.Time) Option { return func(w *Warner) { w.now = now } }

// WithAfterFunc sets how timers are made (default time.AfterFunc).
func WithAfterFunc(f func(time.Duration, func()) func() bool) Option {
	return func(w *Warner) { w.afterFunc = f }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(w *Warner) { w.log = l } }

// New returns a Warner; register its OnVerdict with the compliance engine.
func New(d Decisions, e Emitter, warnBefore WarnBefore, opts ...Option) *Warner {
	w := &Warner{decisions: d, events: e, warnBefore: warnBefore, log: slog.Default(), now: time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
		timers:    map[string]armed{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	go w.run()
	return w
}

// run commits queued warnings until Close, then the rest.
func (w *Warner) run() {
	defer close(w.stopped)
	for {
		select {
		case <-w.wake:
			w.flush()
		case <-w.stop:
			w.flush()
			return
		}
	}
}

func (w *Warner) enqueue(ev events.Event) {
	w.qmu.Lock()
	w.queue = append(w.queue, ev)
	w.qmu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Warner) flush() {
	for {
		w.qmu.Lock()
		n := min(len(w.queue), maxBatch)
		batch := w.queue[:n:n]
		w.queue = w.queue[n:]
		w.qmu.Unlock()
		if n == 0 {
			return
		}
		if err := w.events.Emit(context.Background(), batch...); err != nil {
			w.log.Error("grace warnings could not be committed", "warnings", n, "err", err)
		}
	}
}

// OnVerdict is a compliance.VerdictFunc: a device that entered grace is warned now, and its
// second warning is armed; a device that left grace has its warning disarmed.
func (w *Warner) OnVerdict(old, d *access.Decision, now time.Time) {
	nv := d.Verdict
	if !nv.InGrace(now) {
		w.disarm(d.DeviceID)
		return
	}
	if old != nil && !old.Verdict.Compliant && old.Verdict.NoncompliantSince.Equal(nv.NoncompliantSince) {
		return // the same run of noncompliance: warned already
	}
	code := ""
	if len(nv.Reasons) > 0 {
		code = nv.Reasons[0].Code
	}
	ev := warning(d.DeviceID, posture.EventReasonGraceStarted, nv.GraceUntil, now,
		"noncompliant ("+code+"); denied at "+nv.GraceUntil.UTC().Format(time.RFC3339)+" unless fixed")
	if old != nil && old.Verdict.Compliant {
		ev.PreviousStatus = "compliant"
	}
	w.enqueue(ev)
	w.arm(context.Background(), d.DeviceID, nv.PolicyName, nv.GraceUntil, now)
}

// Load arms the second warning of every device in grace: the timers do not survive a restart.
// A warning whose time passed while the server was down is sent now.
func (w *Warner) Load(ctx context.Context, deviceIDs []string) {
	now := w.now()
	for _, id := range deviceIDs {
		d := w.decisions.Decision(id)
		if d == nil || !d.Verdict.InGrace(now) {
			continue
		}
		w.arm(ctx, id, d.Verdict.PolicyName, d.Verdict.GraceUntil, now)
	}
}

// Follow stops arming grace_ending warnings and disarms those armed: another server sends them.
// The grace_started warning of a device this server puts into grace is still sent here, once.
func (w *Warner) Follow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.following = true
	for id, a := range w.timers {
		a.stop()
		delete(w.timers, id)
	}
}

// Lead makes this Warner the one that sends grace_ending warnings (the default) and arms those
// of the devices given that are in grace now, as Load does.
func (w *Warner) Lead(ctx context.Context, deviceIDs []string) {
	w.mu.Lock()
	w.following = false
	w.mu.Unlock()
	w.Load(ctx, deviceIDs)
}

// Refreshed arms or disarms the grace_ending warnings of devices whose decisions changed
// through another server (which sent their grace_started warning): armed for those in grace
// now, disarmed for the others.
func (w *Warner) Refreshed(ctx context.Context, deviceIDs []string) {
	now := w.now()
	for _, id := range deviceIDs {
		if d := w.decisions.Decision(id); d != nil && d.Verdict.InGrace(now) {
			w.arm(ctx, id, d.Verdict.PolicyName, d.Verdict.GraceUntil, now)
		} else {
			w.disarm(id)
		}
	}
}

func (w *Warner) arm(ctx context.Context, deviceID, policyName string, until, now time.Time) {
	before := w.warnBefore(ctx, policyName)
	if before <= 0 {
		return
	}
	at := until.Add(-before)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.following {
		return
	}
	if a, ok := w.timers[deviceID]; ok {
		if a.until.Equal(until) {
			return
		}
		a.stop()
	}
	w.timers[deviceID] = armed{until: until, stop: w.afterFunc(max(at.Sub(now), 0), func() { w.fire(deviceID, until) })}
}

func (w *Warner) disarm(deviceID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a, ok := w.timers[deviceID]; ok {
		a.stop()
		delete(w.timers, deviceID)
	}
}

// fire sends the grace_ending warning if the same grace period still runs.
func (w *Warner) fire(deviceID string, until time.Time) {
	w.mu.Lock()
	if a, ok := w.timers[deviceID]; ok && a.until.Equal(until) {
		delete(w.timers, deviceID)
	}
	w.mu.Unlock()
	now := w.now()
	d := w.decisions.Decision(deviceID)
	if d == nil || !d.Verdict.InGrace(now) || !d.Verdict.GraceUntil.Equal(until) {
		return
	}
	ev := warning(deviceID, posture.EventReasonGraceEnding, until, now,
		"still noncompliant; denied at "+until.UTC().Format(time.RFC3339)+" unless fixed")
	if err := w.events.Emit(context.Background(), ev); err != nil {
		w.log.Error("a grace warning could not be committed", "device_id", deviceID, "err", err)
		return
	}
	w.log.Info("grace ending: device warned", "device_id", deviceID, "grace_until", until)
}

// Close stops the timers and commits the warnings still queued.
func (w *Warner) Close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, a := range w.timers {
		a.stop()
		delete(w.timers, id)
	}
}

func warning(deviceID, code string, until, now time.Time, detail string) events.Event {
	return events.Event{Type: posture.EventComplianceChange, DeviceID: deviceID, ReasonCode: code, ReasonDetail: detail,
		PreviousStatus: "not-compliant", CurrentStatus: "not-compliant", Initiator: "policy", At: now, GraceUntil: until}
}
