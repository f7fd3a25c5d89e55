package compliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"go.etcd.io/bbolt"
)

var (
	bucketPosture = []byte("compliance_posture") // device id -> Posture JSON
	bucketVerdict = []byte("compliance_verdict") // device id -> Verdict JSON
	// History is append-only: rows are keyed by a sequence so a fleet-wide pass appends at the
	// end of the tree instead of rewriting pages everywhere; a compact index finds one device's.
	bucketHistory    = []byte("compliance_history")     // seq (8-byte BE) -> Verdict JSON
	bucketHistoryIdx = []byte("compliance_history_idx") // device id \x00 seq -> (empty)
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
	State       inventory.State
	Group       string
	OS          string
	CertSerials []string
	CertSHA256  []string
}

func snapshotOf(d *inventory.Device) snapshot {
	return snapshot{State: d.State, Group: d.Group, OS: d.OS, CertSerials: slices.Clone(d.CertSerials),
		CertSHA256: slices.Clone(d.CertSHA256)}
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
}

// Engine evaluates device posture against the effective policies, persists postures and
// verdicts, and keeps the access index current. It is safe for concurrent use: reports for
// different devices commit together (bbolt Batch), reports for one device are serialized, and
// ReevaluateAll runs alone.
//
// A stored verdict is the evaluation that produced the device's current outcome: a report
// always stores a fresh verdict, but a re-evaluation that yields the same outcome (same
// compliance, reasons, grace) writes nothing, so evaluated_at and policy_version then name
// the evaluation that produced it.
type Engine struct {
	db       *bbolt.DB
	policies *PolicyStore
	inv      *inventory.Store
	index    *access.Index
	// stateOverride, when set, names a state that overrides a device's inventory state.
	stateOverride func(deviceID string) string
	now           func() time.Time
	logger        *slog.Logger
	batchSize     int

	// pass is held shared by single-device operations and exclusively by ReevaluateAll, so
	// a whole-fleet pass needs no per-device locks.
	pass sync.RWMutex

	mu      sync.RWMutex // guards devices, order, sorted
	devices map[string]*deviceState
	order   []string // device ids; sorted when sorted is true
	sorted  bool

	hooksMu sync.RWMutex
	hooks   []ChangeFunc
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.logger = l } }

// WithStateOverride sets f, asked for every decision the engine publishes, for a state that
// overrides the inventory's ("" for none). The server uses it for wipe_pending: a device is
// denied from the moment a wipe is accepted, before the inventory says wiped. f must be fast
// and must not block.
func WithStateOverride(f func(deviceID string) string) Option {
	return func(e *Engine) { e.stateOverride = f }
}

// WithBatchSize sets how many changed verdicts ReevaluateAll commits per transaction.
func WithBatchSize(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.batchSize = n
		}
	}
}

// NewEngine returns an Engine on db, creating its buckets. Call Load before serving.
func NewEngine(db *bbolt.DB, ps *PolicyStore, inv *inventory.Store, index *access.Index, opts ...Option) (*Engine, error) {
	if db == nil || ps == nil || inv == nil || index == nil {
		return nil, errors.New("compliance: NewEngine needs a database, policy store, inventory and index")
	}
	e := &Engine{
		db: db, policies: ps, inv: inv, index: index, now: time.Now, logger: slog.New(slog.DiscardHandler),
		batchSize: DefaultBatchSize, devices: map[string]*deviceState{},
	}
	for _, o := range opts {
		o(e)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketPosture, bucketVerdict, bucketHistory, bucketHistoryIdx} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: create buckets: %w", err)
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
	postures := map[string][]byte{}
	verdicts := map[string][]byte{}
	err := e.db.View(func(tx *bbolt.Tx) error {
		for _, x := range []struct {
			b []byte
			m map[string][]byte
		}{{bucketPosture, postures}, {bucketVerdict, verdicts}} {
			// Values are only valid inside the transaction: keep copies.
			if err := tx.Bucket(x.b).ForEach(func(k, v []byte) error {
				x.m[string(k)] = slices.Clone(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("compliance: load postures and verdicts: %w", err)
	}
	now := e.now()
	devices := map[string]*deviceState{}
	order := []string{}
	err = e.inv.ForEach(ctx, func(d *inventory.Device) error {
		st := &deviceState{id: d.ID, dev: snapshotOf(d)}
		if v, ok := postures[d.ID]; ok {
			st.posture = new(policies.Posture)
			if err := json.Unmarshal(v, st.posture); err != nil {
				return fmt.Errorf("compliance: decode posture of %s: %w", d.ID, err)
			}
		}
		if v, ok := verdicts[d.ID]; ok {
			if err := json.Unmarshal(v, &st.verdict); err != nil {
				return fmt.Errorf("compliance: decode verdict of %s: %w", d.ID, err)
			}
			if st.verdict.EvaluatedAt.IsZero() {
				return fmt.Errorf("compliance: stored verdict of %s has no evaluation time", d.ID)
			}
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
func (e *Engine) effective(st *deviceState) *StoredPolicy {
	e.policies.mu.RLock()
	sp, _ := e.policies.effectiveLocked(st.id, st.dev.Group)
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
	d := &access.Decision{
		DeviceID: st.id, State: string(st.dev.State), Verdict: st.verdict, Posture: st.posture,
		CertSerials: st.dev.CertSerials, CertSHA256: st.dev.CertSHA256,
	}
	if e.stateOverride != nil {
		if state := e.stateOverride(st.id); state != "" {
			d.State = state
		}
	}
	if st.posture != nil && !st.posture.ReportedAt.IsZero() {
		d.ReportedAt = st.posture.ReportedAt
		d.StaleAt = d.ReportedAt.Add(reportMaxAge(sp))
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
	d, err := e.inv.Get(ctx, id)
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
	return e.ingest(ctx, deviceID, func(old *policies.Posture) (*policies.Posture, error) {
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
	return e.ingest(ctx, deviceID, func(old *policies.Posture) (*policies.Posture, error) {
		p, err := clonePosture(old)
		if err != nil {
			return nil, err
		}
		update(p)
		p.ReportedAt = at
		return p, nil
	})
}

// ingest replaces a device's posture with next(old), evaluates, commits and publishes.
func (e *Engine) ingest(ctx context.Context, deviceID string, next func(*policies.Posture) (*policies.Posture, error)) (policies.Verdict, error) {
	e.pass.RLock()
	defer e.pass.RUnlock()
	st, err := e.state(ctx, deviceID)
	if err != nil {
		return policies.Verdict{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	p, err := next(st.posture)
	if err != nil {
		return policies.Verdict{}, err
	}
	if p.Platform == "" && st.dev.OS != "" {
		p.Platform = policies.Platform(st.dev.OS)
	}
	pj, err := json.Marshal(p)
	if err != nil {
		return policies.Verdict{}, fmt.Errorf("compliance: encode posture of %s: %w", deviceID, err)
	}
	return e.commitOne(ctx, st, st.dev, p, pj)
}

// commitOne evaluates st with posture p and device snapshot dev, commits (the posture too when
// pj is not nil; the verdict when it changed), then updates memory, index and hooks. The caller
// holds e.pass shared and st.mu.
func (e *Engine) commitOne(ctx context.Context, st *deviceState, dev snapshot, p *policies.Posture, pj []byte) (policies.Verdict, error) {
	now := e.now().UTC()
	next := &deviceState{id: st.id, dev: dev, posture: p}
	sp := e.effective(next)
	prev := st.verdict
	v := policies.Evaluate(policyOf(sp), p, &prev, now)
	changed, hist := verdictChanged(&prev, &v)
	if st.unsaved {
		changed, hist = true, true
	}
	if pj != nil {
		changed = true // a report is stored with the verdict it earned, evaluated now
	} else if !changed {
		v = prev // keep the stored verdict; nothing but the evaluation time moved
	}
	next.verdict = v
	if pj != nil || changed {
		var vj []byte
		if changed {
			var err error
			if vj, err = json.Marshal(&v); err != nil {
				return policies.Verdict{}, fmt.Errorf("compliance: encode verdict of %s: %w", st.id, err)
			}
		}
		// Batch may run the function more than once; it only puts fixed keys and values.
		err := e.db.Batch(func(tx *bbolt.Tx) error {
			if pj != nil {
				if err := tx.Bucket(bucketPosture).Put([]byte(st.id), pj); err != nil {
					return err
				}
			}
			if vj != nil {
				return putVerdictTx(tx, st.id, &v, vj, hist)
			}
			return nil
		})
		if err != nil {
			return policies.Verdict{}, fmt.Errorf("compliance: commit posture of %s: %w", st.id, err)
		}
	}
	st.dev, st.posture, st.verdict, st.unsaved, st.maxAge = dev, p, v, false, reportMaxAge(sp)
	if c, ok := e.publish(e.decision(st, sp), now); ok {
		e.runHooks(ctx, []Change{c})
	}
	return v, nil
}

func putVerdictTx(tx *bbolt.Tx, id string, v *policies.Verdict, vj []byte, hist bool) error {
	if err := tx.Bucket(bucketVerdict).Put([]byte(id), vj); err != nil {
		return err
	}
	if !hist {
		return nil
	}
	rows := tx.Bucket(bucketHistory)
	rows.FillPercent = 1 // append-only: pack pages full
	seq, err := rows.NextSequence()
	if err != nil {
		return err
	}
	key := binary.BigEndian.AppendUint64(nil, seq)
	if err := rows.Put(key, vj); err != nil {
		return err
	}
	return tx.Bucket(bucketHistoryIdx).Put(append(append([]byte(id), 0), key...), nil)
}

// verdictChanged reports whether the outcome of v differs from prev, and whether the
// difference belongs in the history (compliance or the set of reason codes).
//
// The outcome is compliance, reasons, noncompliant_since, grace_until and the policy's name.
// A new version of the same policy that gives the same outcome is not a change: the stored
// verdict stays the evaluation that produced the outcome (its evaluated_at and policy_version
// say when and under which version), so an edit to a policy rewrites only the verdicts it
// actually moves.
func verdictChanged(prev, v *policies.Verdict) (changed, history bool) {
	history = prev.EvaluatedAt.IsZero() || prev.Compliant != v.Compliant ||
		!slices.EqualFunc(prev.Reasons, v.Reasons, func(a, b policies.Reason) bool { return a.Code == b.Code })
	changed = history || prev.PolicyName != v.PolicyName ||
		!prev.NoncompliantSince.Equal(v.NoncompliantSince) || !prev.GraceUntil.Equal(v.GraceUntil) ||
		!slices.Equal(prev.Reasons, v.Reasons)
	return changed, history
}

// publish puts a committed decision into the index and returns the change for the hooks when,
// compared with the decision it replaces, the allow flipped or the device state changed. A
// device's first decision is not a change.
//
// A decision that answers exactly like the published one (only the policy version it was
// evaluated against, or the evaluation time, moved) leaves the published entry alone: the
// index re-encodes an answer on every Put, and a policy edit that changes no outcome would
// otherwise re-encode every device it covers.
func (e *Engine) publish(nd *access.Decision, now time.Time) (Change, bool) {
	old := e.index.Decision(nd.DeviceID)
	if old != nil && sameAnswer(old, nd) {
		return Change{}, false
	}
	e.index.Put(nd, now)
	if old == nil || old.State == nd.State && old.Answer(now).Allow == nd.Answer(now).Allow {
		return Change{}, false
	}
	return Change{DeviceID: nd.DeviceID, Old: *old, New: *nd}, true
}

// runHooks tells every hook about changes, when there are any.
func (e *Engine) runHooks(ctx context.Context, changes []Change) {
	if len(changes) == 0 {
		return
	}
	e.hooksMu.RLock()
	hooks := e.hooks
	e.hooksMu.RUnlock()
	for _, h := range hooks {
		h(ctx, changes)
	}
}

// sameAnswer reports whether two decisions answer the same at every instant, apart from the
// evaluation time.
func sameAnswer(a, b *access.Decision) bool {
	return a.State == b.State && a.Posture == b.Posture && a.ReportedAt.Equal(b.ReportedAt) &&
		a.StaleAt.Equal(b.StaleAt) && slices.Equal(a.CertSerials, b.CertSerials) &&
		slices.Equal(a.CertSHA256, b.CertSHA256) &&
		a.Verdict.Compliant == b.Verdict.Compliant && slices.Equal(a.Verdict.Reasons, b.Verdict.Reasons) &&
		a.Verdict.NoncompliantSince.Equal(b.Verdict.NoncompliantSince) && a.Verdict.GraceUntil.Equal(b.Verdict.GraceUntil)
}

// Evaluate re-evaluates one device from its current posture and commits a changed verdict.
func (e *Engine) Evaluate(ctx context.Context, deviceID string) (policies.Verdict, error) {
	e.pass.RLock()
	defer e.pass.RUnlock()
	st, err := e.state(ctx, deviceID)
	if err != nil {
		return policies.Verdict{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return e.commitOne(ctx, st, st.dev, st.posture, nil)
}

// DeviceChanged refreshes what the engine knows of a device's inventory record (state, group,
// OS, certificate serials) and re-evaluates it. The server calls it after every inventory
// change: enrollment, lock, wipe, group move, certificate renewal.
func (e *Engine) DeviceChanged(ctx context.Context, d *inventory.Device) (policies.Verdict, error) {
	if d == nil {
		return policies.Verdict{}, errors.New("compliance: DeviceChanged needs a device")
	}
	e.pass.RLock()
	defer e.pass.RUnlock()
	st, err := e.state(ctx, d.ID)
	if err != nil {
		return policies.Verdict{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return e.commitOne(ctx, st, snapshotOf(d), st.posture, nil)
}

// change is one device whose verdict moved in a ReevaluateAll pass.
type change struct {
	st   *deviceState
	sp   *StoredPolicy
	v    policies.Verdict
	hist bool
	vj   []byte
	// indexOnly marks an unchanged verdict whose decision must still be republished.
	indexOnly bool
}

// ReevaluateAll evaluates every device from memory at the current time, commits the verdicts
// that changed in batches, and updates the index and hooks after each committed batch. Run it
// after a policy or assignment change; RunStaleness runs it periodically.
func (e *Engine) ReevaluateAll(ctx context.Context) (Stats, error) {
	start := time.Now()
	e.pass.Lock()
	defer e.pass.Unlock()
	now := e.now().UTC()
	e.mu.Lock()
	if !e.sorted {
		sort.Strings(e.order)
		e.sorted = true
	}
	order := e.order
	devices := e.devices
	e.mu.Unlock()

	stats := Stats{Devices: len(order)}
	// Changed verdicts are committed a batch at a time while the pass goes on. Publishing
	// (index entries, hooks) of a committed batch runs beside the evaluation and commit of the
	// next one; each batch is still published only after its own commit.
	committed := make(chan []change, 1)
	published := make(chan struct{})
	go func() {
		defer close(published)
		var changes []Change
		for batch := range committed {
			changes = changes[:0]
			for i := range batch {
				c := &batch[i]
				c.st.mu.Lock() // Verdict reads without holding e.pass
				c.st.verdict, c.st.unsaved, c.st.maxAge = c.v, false, reportMaxAge(c.sp)
				d := e.decision(c.st, c.sp)
				c.st.mu.Unlock()
				if ch, ok := e.publish(d, now); ok {
					changes = append(changes, ch)
				}
			}
			e.runHooks(ctx, changes)
		}
	}()
	err := e.evaluateAll(ctx, order, devices, now, committed, &stats)
	close(committed)
	<-published
	if err != nil {
		return stats, err
	}
	stats.Took = time.Since(start)
	return stats, nil
}

// evaluateAll evaluates every device in order and commits the changed verdicts in batches,
// handing each committed batch to the publisher.
func (e *Engine) evaluateAll(ctx context.Context, order []string, devices map[string]*deviceState, now time.Time, committed chan<- []change, stats *Stats) error {
	batch := make([]change, 0, e.batchSize)
	for i, id := range order {
		st := devices[id]
		e.policies.mu.RLock()
		sp, _ := e.policies.effectiveLocked(id, st.dev.Group)
		e.policies.mu.RUnlock()
		v := policies.Evaluate(policyOf(sp), st.posture, &st.verdict, now)
		changed, hist := verdictChanged(&st.verdict, &v)
		if st.unsaved {
			changed, hist = true, true
		}
		switch {
		case changed:
			batch = append(batch, change{st: st, sp: sp, v: v, hist: hist})
		case reportMaxAge(sp) != st.maxAge:
			// Same verdict, new staleness deadline: publish, nothing to write.
			batch = append(batch, change{st: st, sp: sp, v: st.verdict, indexOnly: true})
		}
		if len(batch) == e.batchSize || i == len(order)-1 && len(batch) > 0 {
			if err := e.commitBatch(ctx, batch); err != nil {
				return err
			}
			committed <- batch
			for i := range batch {
				if !batch[i].indexOnly {
					stats.Changed++
				}
			}
			batch = make([]change, 0, e.batchSize)
		}
	}
	return nil
}

// commitBatch encodes and commits the verdicts (and history rows) of one batch.
func (e *Engine) commitBatch(ctx context.Context, batch []change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range batch {
		if batch[i].indexOnly {
			continue
		}
		vj, err := json.Marshal(&batch[i].v)
		if err != nil {
			return fmt.Errorf("compliance: encode verdict of %s: %w", batch[i].st.id, err)
		}
		batch[i].vj = vj
	}
	err := e.db.Update(func(tx *bbolt.Tx) error {
		for i := range batch {
			c := &batch[i]
			if c.indexOnly {
				continue
			}
			if err := putVerdictTx(tx, c.st.id, &c.v, c.vj, c.hist); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("compliance: commit re-evaluated verdicts: %w", err)
	}
	return nil
}

// DryRun returns the devices that would be noncompliant if p applied to target, with their
// reasons, by device ID. A device gets p for target when the target is the strongest
// assignment it would have: a group target does not reach devices with their own device
// assignment, and the default does not reach devices covered by a group or device assignment.
// The zero Target means wherever a policy named p.Name is assigned now. Nothing is written.
func (e *Engine) DryRun(ctx context.Context, p *policies.Policy, target Target) ([]DryRunResult, error) {
	if p == nil {
		return nil, errors.New("compliance: DryRun needs a policy")
	}
	current := target == Target{}
	if !current {
		if err := target.validate(); err != nil {
			return nil, err
		}
	}
	e.pass.RLock()
	defer e.pass.RUnlock()
	e.mu.RLock()
	states := make([]*deviceState, 0, len(e.devices))
	for _, st := range e.devices {
		states = append(states, st)
	}
	e.mu.RUnlock()
	now := e.now().UTC()
	out := []DryRunResult{}
	for _, st := range states {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st.mu.Lock()
		dev, pos, prev := st.dev, st.posture, st.verdict
		st.mu.Unlock()
		if !e.dryRunApplies(st.id, dev.Group, p.Name, target, current) {
			continue
		}
		v := policies.Evaluate(p, pos, &prev, now)
		if v.Compliant {
			continue
		}
		out = append(out, DryRunResult{
			DeviceID: st.id, Group: dev.Group, State: string(dev.State), Reasons: v.Reasons,
			InGrace: v.InGrace(now), GraceUntil: v.GraceUntil,
		})
	}
	slices.SortFunc(out, func(a, b DryRunResult) int {
		switch {
		case a.DeviceID < b.DeviceID:
			return -1
		case a.DeviceID > b.DeviceID:
			return 1
		}
		return 0
	})
	return out, nil
}

// dryRunApplies reports whether a device would get the candidate policy.
func (e *Engine) dryRunApplies(id, group, name string, target Target, current bool) bool {
	e.policies.mu.RLock()
	defer e.policies.mu.RUnlock()
	sp, from := e.policies.effectiveLocked(id, group)
	if current {
		return sp != nil && sp.Name == name
	}
	switch target.Kind {
	case TargetDevice:
		return target.Name == id
	case TargetGroup:
		return target.Name == group && from.Kind != TargetDevice
	default:
		return from.Kind != TargetDevice && from.Kind != TargetGroup
	}
}

// RunStaleness re-evaluates every device now and then every interval until ctx ends, so that
// stored verdicts and history reflect reports going stale and grace periods ending (the index
// already denies at read time). Errors are logged and retried at the next tick.
func (e *Engine) RunStaleness(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := e.ReevaluateAll(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			e.logger.Error("compliance: periodic re-evaluation failed; retrying at the next tick", "err", err)
		case err == nil && st.Changed > 0:
			e.logger.Info("compliance: periodic re-evaluation", "devices", st.Devices, "changed", st.Changed, "took", st.Took)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	return st.verdict, st.posture, true
}

// History returns up to limit verdict history rows of a device, oldest first.
func (e *Engine) History(ctx context.Context, deviceID string, limit int) ([]policies.Verdict, error) {
	if limit <= 0 {
		limit = 100
	}
	prefix := append([]byte(deviceID), 0)
	var out []policies.Verdict
	err := e.db.View(func(tx *bbolt.Tx) error {
		hist := tx.Bucket(bucketHistory)
		c := tx.Bucket(bucketHistoryIdx).Cursor()
		for k, _ := c.Seek(prefix); k != nil && len(out) < limit && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := hist.Get(k[len(prefix):])
			if v == nil {
				return fmt.Errorf("compliance: history index of %s points at a missing row", deviceID)
			}
			var vd policies.Verdict
			if err := json.Unmarshal(v, &vd); err != nil {
				return fmt.Errorf("compliance: decode history of %s: %w", deviceID, err)
			}
			out = append(out, vd)
		}
		return nil
	})
	return out, err
}
