package compliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// DefaultBatchSize is how many changed verdicts ReevaluateAll commits per write transaction.
// A pass blocks single-device writes for its whole length anyway, so the batch only trades
// fsyncs against the size of one transaction (about 1 MiB of verdicts and history here).
const DefaultBatchSize = 5000

// Change is a device whose access decision flipped (allow to deny or back) or whose state
// changed: the decision published before and the one published now.
type Change struct {
	DeviceID string
	Old, New access.Decision
}

// ChangeFunc is told about changed devices a committed batch at a time: one change after a
// single device's update, up to the batch size during a fleet-wide pass, so a hook that
// writes (the security event outbox) commits once per batch rather than once per device. It
// runs synchronously after the commit and before the call that caused it returns, so it must
// be quick and must not call back into the Engine.
type ChangeFunc func(ctx context.Context, changes []Change)

// Stats describes one ReevaluateAll pass.
type Stats struct {
	Devices int `json:"devices"`
	// Changed counts the verdicts written (see verdictChanged for what a change is).
	Changed int           `json:"changed"`
	Took    time.Duration `json:"took"`
}

// DryRunResult is one device that would be noncompliant under a candidate policy.
type DryRunResult struct {
	DeviceID string            `json:"device_id"`
	Group    string            `json:"group,omitempty"`
	State    string            `json:"state"`
	Reasons  []policies.Reason `json:"reasons"`
	// InGrace is true when the device would still be allowed now because of the grace period.
	InGrace    bool      `json:"in_grace"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
}

// snapshot is the part of an inventory record evaluation and decisions need.
type snapshot struct {
	State inventory.State
	// Wipe is the state of the device's unfinished wipe, if it has one.
	Wipe        inventory.WipeState
	Group       string
	OS          string
	CertSerials []string
	CertSHA256  []string
}

func snapshotOf(d *inventory.Device) snapshot {
	s := snapshot{State: d.State, Group: d.Group, OS: d.OS, CertSerials: slices.Clone(d.CertSerials),
		CertSHA256: slices.Clone(d.CertSHA256)}
	if d.Wipe != nil {
		s.Wipe = d.Wipe.State
	}
	return s
}

// accessState is the state a decision names for a device: an unfinished wipe's (wipe_pending
// from the moment a wipe is accepted, before the inventory says wiped; wipe_incomplete when it
// left managed data behind) over the inventory state.
func (s snapshot) accessState() string {
	switch s.Wipe {
	case inventory.WipePending:
		return "wipe_pending"
	case inventory.WipeIncomplete:
		return "wipe_incomplete"
	}
	return string(s.State)
}

// deviceState is what the Engine knows about one device. posture is never changed in place
// once published (decisions in the index share it); a new report makes a new posture.
type deviceState struct {
	mu      sync.Mutex // held across evaluate, commit and publish of this device
	id      string
	dev     snapshot
	posture *policies.Posture
	verdict policies.Verdict
	// unsaved marks a verdict computed at Load for a device that had none stored; the next
	// evaluation writes it even if it did not change.
	unsaved bool
	// maxAge is the report age limit of the policy in the published decision: a policy edit
	// that changes only it moves the decision's StaleAt without changing the verdict.
	maxAge time.Duration
	// placeholder marks a state Refresh added, still locked, for a device it is reading; one
	// left set after Refresh unlocks it was not found and is no longer in the engine.
	placeholder bool
}

// Engine evaluates device posture against the effective policies, persists postures and
// verdicts, and keeps the access index current. It is safe for concurrent use: reports for
// different devices commit together (Store.Batch), reports for one device are serialized, and
// ReevaluateAll runs alone.
//
// A stored verdict is the evaluation that produced the device's current outcome: a report
// always stores a fresh verdict, but a re-evaluation that yields the same outcome (same
// compliance, reasons, grace) writes nothing, so evaluated_at and policy_version then name
// the evaluation that produced it.
type Engine struct {
	st       Store
	policies *PolicyStore
	index    *access.Index
	now      func() time.Time
	logger   *slog.Logger
	// batchSize is how many changed verdicts ReevaluateAll commits per transaction.
	batchSize int
	// shared marks a store other servers write too (WithSharedStore).
	shared bool

	// pass is held shared by single-device operations and exclusively by ReevaluateAll, so
	// a whole-fleet pass needs no per-device locks.
	pass sync.RWMutex

	mu      sync.RWMutex // guards devices, order, sorted
	devices map[string]*deviceState
	order   []string // device ids; sorted when sorted is true
	sorted  bool

	hooksMu sync.RWMutex
	hooks   []ChangeFunc
	// verdictHooks are told of every decision published with a new outcome (OnVerdict).
	verdictHooks []VerdictFunc
}

// VerdictFunc is told of a decision published with a new outcome (old is nil for a device's
// first). It runs synchronously after the commit, so it must be quick and must not call back
// into the Engine.
type VerdictFunc func(old, decision *access.Decision, now time.Time)

// OnVerdict registers a hook called whenever a device's published decision changes, whether
// or not its allow flipped: a device entering grace, for one.
func (e *Engine) OnVerdict(fn VerdictFunc) {
	e.hooksMu.Lock()
	e.verdictHooks = append(e.verdictHooks, fn)
	e.hooksMu.Unlock()
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// WithSharedStore tells the engine that other servers write its store (several servers on one
// PostgreSQL database): a fleet pass then reads every device it changes back in its unit of
// work instead of trusting memory. Single-device commits always do.
func WithSharedStore() Option { return func(e *Engine) { e.shared = true } }

// WithBatchSize sets how many changed verdicts ReevaluateAll commits per transaction.
func WithBatchSize(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.batchSize = n
		}
	}
}

// NewEngine returns an Engine on st, which holds the postures and verdicts and the inventory
// it evaluates. Call Load before serving.
func NewEngine(st Store, ps *PolicyStore, index *access.Index, opts ...Option) (*Engine, error) {
	if st == nil || ps == nil || index == nil {
		return nil, errors.New("compliance: NewEngine needs a store, policy store and index")
	}
	e := &Engine{
		st: st, policies: ps, index: index, now: time.Now, logger: slog.New(slog.DiscardHandler),
		batchSize: DefaultBatchSize, devices: map[string]*deviceState{},
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// Policies returns the engine's policy store.
func (e *Engine) Policies() *PolicyStore { return e.policies }

// OnChange registers a hook called after a decision's allow flips or a device's state changes.
func (e *Engine) OnChange(fn ChangeFunc) {
	e.hooksMu.Lock()
	e.hooks = append(e.hooks, fn)
	e.hooksMu.Unlock()
}

// Load reads every device from the inventory with its stored posture and verdict, fills the
// index and marks it loaded. Any read or decode error fails Load: the index then stays not
// loaded and every lookup denies. A device without a stored verdict is evaluated in memory
// (no_report or no_policy); the next ReevaluateAll persists it.
func (e *Engine) Load(ctx context.Context) error {
	e.pass.Lock()
	defer e.pass.Unlock()
	now := e.now()
	postures := map[string]*policies.Posture{}
	verdicts := map[string]*policies.Verdict{}
	devices := map[string]*deviceState{}
	order := []string{}
	// One snapshot: the inventory, postures and verdicts as they were at one instant.
	err := e.st.View(ctx, func(tx Tx) error {
		r := tx.Compliance()
		if err := r.ForEachPosture(ctx, func(id string, p *policies.Posture) error {
			postures[id] = p
			return nil
		}); err != nil {
			return fmt.Errorf("compliance: load postures: %w", err)
		}
		if err := r.ForEachVerdict(ctx, func(id string, v *policies.Verdict) error {
			verdicts[id] = v
			return nil
		}); err != nil {
			return fmt.Errorf("compliance: load verdicts: %w", err)
		}
		err := tx.Inventory().ForEach(ctx, "", func(d *inventory.Device) error {
			st := &deviceState{id: d.ID, dev: snapshotOf(d), posture: postures[d.ID]}
			if v, ok := verdicts[d.ID]; ok {
				if v.EvaluatedAt.IsZero() {
					return fmt.Errorf("compliance: stored verdict of %s has no evaluation time", d.ID)
				}
				st.verdict = *v
			} else {
				st.verdict = policies.Evaluate(policyOf(e.effective(st)), st.posture, nil, now)
				st.unsaved = true
			}
			devices[d.ID] = st
			order = append(order, d.ID)
			return nil
		})
		if err != nil {
			return fmt.Errorf("compliance: load devices: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(postures) > len(devices) {
		e.logger.Warn("compliance: postures stored for devices missing from the inventory", "postures", len(postures), "devices", len(devices))
	}
	e.mu.Lock()
	e.devices, e.order, e.sorted = devices, order, true // ForEach yields ID order
	e.mu.Unlock()
	for _, id := range order {
		st := devices[id]
		sp := e.effective(st)
		st.maxAge = reportMaxAge(sp)
		e.index.Put(e.decision(st, sp), now)
	}
	e.index.MarkLoaded()
	e.logger.Info("compliance: loaded", "devices", len(order))
	return nil
}

// effective returns the policy for a device state, or nil.
func (e *Engine) effective(st *deviceState) *StoredPolicy { return e.effectiveFor(st.id, st.dev.Group) }

// effectiveFor returns the policy for a device in group, or nil.
func (e *Engine) effectiveFor(id, group string) *StoredPolicy {
	e.policies.mu.RLock()
	sp, _ := e.policies.effectiveLocked(id, group)
	e.policies.mu.RUnlock()
	return sp
}

func policyOf(sp *StoredPolicy) *policies.Policy {
	if sp == nil {
		return nil
	}
	return sp.Policy
}

// decision builds the index entry of a device state.
func (e *Engine) decision(st *deviceState, sp *StoredPolicy) *access.Decision {
	return decisionOf(st.id, st.dev, st.posture, st.verdict, reportMaxAge(sp))
}

// decisionOf builds the index entry of a device from its record, posture and verdict; a
// report counts for maxAge.
func decisionOf(id string, dev snapshot, p *policies.Posture, v policies.Verdict, maxAge time.Duration) *access.Decision {
	d := &access.Decision{
		DeviceID: id, State: dev.accessState(), Verdict: v, Posture: p,
		CertSerials: dev.CertSerials, CertSHA256: dev.CertSHA256,
	}
	if p != nil && !p.ReportedAt.IsZero() {
		d.ReportedAt = p.ReportedAt
		d.StaleAt = d.ReportedAt.Add(maxAge)
	}
	return d
}

func reportMaxAge(sp *StoredPolicy) time.Duration {
	if sp == nil {
		return policies.DefaultReportMaxAge
	}
	return sp.Policy.ReportMaxAge()
}

// state returns the in-memory state of a device, reading a device the engine has not seen
// from the inventory (enrolled after Load).
func (e *Engine) state(ctx context.Context, id string) (*deviceState, error) {
	e.mu.RLock()
	st := e.devices[id]
	e.mu.RUnlock()
	if st != nil {
		return st, nil
	}
	var d *inventory.Device
	err := e.st.View(ctx, func(tx Tx) error {
		var err error
		d, err = tx.Inventory().Get(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: device %s: %w", id, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if st = e.devices[id]; st == nil {
		st = &deviceState{id: id, dev: snapshotOf(d)}
		e.devices[id] = st
		e.order = append(e.order, id)
		e.sorted = false
	}
	return st, nil
}

// IngestAgentReport records an agent's posture report received at at. The agent's claims
// replace every agent-provenance claim the device had; claims from MDM or attestation are kept
// where both report the same fact, because they are more trustworthy. The posture and verdict
// are committed before the index is updated; the verdict is returned.
func (e *Engine) IngestAgentReport(ctx context.Context, deviceID string, p *policies.Posture, at time.Time) (policies.Verdict, error) {
	if p == nil {
		return policies.Verdict{}, errors.New("compliance: empty posture report")
	}
	return e.commit(ctx, deviceID, func(old *policies.Posture) (*policies.Posture, error) {
		return mergeAgent(old, p, at.UTC()), nil
	})
}

// IngestAppleResult applies update to a copy of the device's posture (the caller maps an Apple
// command result into claims with provenance mdm), stamps ReportedAt with the engine clock,
// commits, then updates the index. The verdict is returned.
func (e *Engine) IngestAppleResult(ctx context.Context, deviceID string, update func(*policies.Posture)) (policies.Verdict, error) {
	if update == nil {
		return policies.Verdict{}, errors.New("compliance: IngestAppleResult needs an update function")
	}
	at := e.now().UTC()
	return e.commit(ctx, deviceID, func(old *policies.Posture) (*policies.Posture, error) {
		p, err := clonePosture(old)
		if err != nil {
			return nil, err
		}
		update(p)
		p.ReportedAt = at
		return p, nil
	})
}

// IngestAppReport applies update to a copy of the device's posture (the caller maps what an
// attested instance of the messaging app established, with provenance app or attested), stamps
// ReportedAt with the engine clock, commits, then updates the index. The verdict is returned.
func (e *Engine) IngestAppReport(ctx context.Context, deviceID string, update func(*policies.Posture)) (policies.Verdict, error) {
	return e.IngestAppleResult(ctx, deviceID, update)
}

// Evaluate re-evaluates one device from its current posture and commits a changed verdict.
func (e *Engine) Evaluate(ctx context.Context, deviceID string) (policies.Verdict, error) {
	return e.commit(ctx, deviceID, nil)
}

// DeviceChanged refreshes what the engine knows of a device's inventory record (state, unfinished
// wipe, group, OS, certificate serials) and re-evaluates it. The server calls it after every
// inventory change: enrollment, lock, wipe, group move, certificate renewal. d names the device;
// what is used is its record as committed when the engine gets to it.
func (e *Engine) DeviceChanged(ctx context.Context, d *inventory.Device) (policies.Verdict, error) {
	if d == nil {
		return policies.Verdict{}, errors.New("compliance: DeviceChanged needs a device")
	}
	// The record is read again inside the unit of work, under the device's lock: of two changes
	// racing here, the one applied last then carries the latest committed record, never a copy
	// read before the other committed (which would drop its lock or its wipe_pending from the
	// decision).
	return e.commit(ctx, d.ID, nil)
}

// Verdict returns the device's current verdict and posture from memory; ok is false for a
// device the engine does not know. The posture is shared: treat it as read-only.
func (e *Engine) Verdict(deviceID string) (v policies.Verdict, p *policies.Posture, ok bool) {
	e.mu.RLock()
	st := e.devices[deviceID]
	e.mu.RUnlock()
	if st == nil {
		return policies.Verdict{}, nil, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.placeholder {
		return policies.Verdict{}, nil, false
	}
	return st.verdict, st.posture, true
}

// History returns up to limit verdict history rows of a device, oldest first.
func (e *Engine) History(ctx context.Context, deviceID string, limit int) ([]policies.Verdict, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []policies.Verdict
	err := e.st.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Compliance().History(ctx, deviceID, limit)
		return err
	})
	return out, err
}
