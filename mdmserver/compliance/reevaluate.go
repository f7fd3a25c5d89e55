package compliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Fleet-wide work: re-evaluating every device after a policy change or as time passes, and
// dry runs of a candidate policy.

// change is one device whose verdict moved in a ReevaluateAll pass, by memory's evaluation;
// commitBatch evaluates it again from what the store holds.
type change struct {
	st *deviceState
	sp *StoredPolicy
	v  policies.Verdict
	// indexOnly marks an unchanged verdict whose decision must still be republished.
	indexOnly bool
	// Set by commitBatch: what the store held before, the posture evaluated, whether the
	// verdict was written, and whether the device is gone from the inventory.
	before  stored
	p       *policies.Posture
	written bool
	gone    bool
}

// ReevaluateAll evaluates every device from memory at the current time, commits the verdicts
// that changed in batches, and updates the index and hooks after each committed batch. Run it
// after a policy or assignment change; RunStaleness runs it periodically.
func (e *Engine) ReevaluateAll(ctx context.Context) (Stats, error) {
	start := time.Now()
	e.pass.Lock()
	defer e.pass.Unlock()
	var stats Stats
	// A pass evaluates with the stored policies: it reloads them first if another server
	// changed them, and starts again should they change during the pass.
	if err := e.reloadMovedPolicies(ctx); err != nil {
		return stats, err
	}
	err := e.withCurrentPolicies(ctx, func() error {
		var err error
		stats, err = e.reevaluateAll(ctx)
		return err
	})
	stats.Took = time.Since(start)
	return stats, err
}

// reevaluateAll is one pass of ReevaluateAll. The caller holds e.pass.
func (e *Engine) reevaluateAll(ctx context.Context) (Stats, error) {
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
				if ch, ok := e.publishReevaluated(&batch[i], now); ok {
					changes = append(changes, ch)
				}
			}
			e.runHooks(ctx, changes)
		}
	}()
	err := e.evaluateAll(ctx, order, devices, now, committed, &stats)
	close(committed)
	<-published
	return stats, err
}

// evaluateAll evaluates every device in order and commits the changed verdicts in batches,
// handing each committed batch to the publisher.
func (e *Engine) evaluateAll(ctx context.Context, order []string, devices map[string]*deviceState, now time.Time, committed chan<- []change, stats *Stats) error {
	batch := make([]change, 0, e.batchSize)
	for i, id := range order {
		st := devices[id]
		sp := e.effectiveFor(id, st.dev.Group)
		v := policies.Evaluate(policyOf(sp), st.posture, &st.verdict, now)
		changed, _ := verdictChanged(&st.verdict, &v)
		switch {
		case changed || st.unsaved:
			batch = append(batch, change{st: st, sp: sp, v: v})
		case reportMaxAge(sp) != st.maxAge:
			// Same verdict, new staleness deadline: publish, nothing to write.
			batch = append(batch, change{st: st, sp: sp, v: st.verdict, indexOnly: true})
		}
		if len(batch) == e.batchSize || i == len(order)-1 && len(batch) > 0 {
			if err := e.commitBatch(ctx, batch, now); err != nil {
				return err
			}
			committed <- batch
			for i := range batch {
				if batch[i].written {
					stats.Changed++
				}
			}
			batch = make([]change, 0, e.batchSize)
		}
	}
	return nil
}

// commitBatch evaluates the devices of one batch again from what the store holds (another
// server may have committed since memory was last told) and commits the verdicts that changed
// (and their history rows) in one unit of work.
func (e *Engine) commitBatch(ctx context.Context, batch []change, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := e.st.Update(ctx, func(tx Tx) error {
		if err := e.checkPolicies(ctx, tx); err != nil {
			return err
		}
		for i := range batch {
			c := &batch[i]
			if c.indexOnly {
				continue
			}
			before, err := e.passRecord(ctx, tx, c.st)
			if errors.Is(err, inventory.ErrNotFound) {
				c.gone = true // removed through another server
				continue
			} else if err != nil {
				return err
			}
			if samePosture(c.st.posture, before.posture) {
				before.posture = c.st.posture
			}
			sp, v, prev, changed, hist := e.evaluateStored(c.st.id, before, before.posture, c.st.unsavedVerdict(), now)
			c.before, c.p, c.sp, c.v, c.written = before, before.posture, sp, v, changed
			if !changed {
				c.v = prev
				continue
			}
			if err := tx.Compliance().PutVerdict(ctx, c.st.id, &v, hist); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPoliciesMoved) {
		return fmt.Errorf("compliance: commit re-evaluated verdicts: %w", err)
	}
	return err
}

// passRecord is what a fleet pass evaluates a device from: on a store other servers write
// (WithSharedStore) its record as the unit of work reads it; alone on its store, the engine's
// memory, which is then what the store holds (a pass over 100,000 devices need not decode them
// all again).
func (e *Engine) passRecord(ctx context.Context, tx Tx, st *deviceState) (stored, error) {
	if e.shared {
		return readStored(ctx, tx, st.id)
	}
	rec := stored{dev: st.dev, posture: st.posture}
	if !st.unsaved {
		v := st.verdict
		rec.verdict = &v
	}
	return rec, nil
}

// publishReevaluated brings memory and the index to a committed change of a pass and returns
// the change for the hooks, if it is one.
func (e *Engine) publishReevaluated(c *change, now time.Time) (Change, bool) {
	if c.gone {
		e.forget(c.st.id)
		return Change{}, false
	}
	c.st.mu.Lock() // Verdict reads without holding e.pass
	old := e.index.Decision(c.st.id)
	if !c.indexOnly {
		old = e.storedDecision(c.st, c.before, c.st.unsavedVerdict())
		c.st.dev, c.st.posture = c.before.dev, c.p
	}
	c.st.verdict, c.st.unsaved, c.st.maxAge = c.v, false, reportMaxAge(c.sp)
	d := e.decision(c.st, c.sp)
	c.st.mu.Unlock()
	return e.publish(old, d, now)
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
		if err := target.Validate(); err != nil {
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
		dev, pos, prev, gone := st.dev, st.posture, st.verdict, st.placeholder
		st.mu.Unlock()
		if gone || !e.dryRunApplies(st.id, dev.Group, p.Name, target, current) {
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
