package compliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
)

// Committing one device. Several servers may write one database (PostgreSQL): what this
// engine holds in memory can be behind another server's commit for the same device. So every
// evaluation that writes reads the device's inventory record, posture and verdict inside the
// unit of work that writes the result, and evaluates those: a report merged into a posture
// another server just replaced would drop what that server stored. The store's writers run
// one at a time (bbolt's single writer; PostgreSQL's writer lock), so what is read there is
// the latest commit. Memory and the index then take the committed result.

// stored is what the store held of one device when a unit of work read it.
type stored struct {
	dev     snapshot
	posture *policies.Posture
	verdict *policies.Verdict // nil: none stored
}

// devicePrefetcher is a repository that can read what evaluating a device reads in one round
// trip (PostgreSQL's); the reads that follow then cost none.
type devicePrefetcher interface {
	PrefetchDevice(ctx context.Context, id string)
}

// prefetch reads, where the backend can in one round trip, what checkPolicies and readStored
// read of device id.
func prefetch(ctx context.Context, tx Tx, id string) {
	if p, ok := tx.Compliance().(devicePrefetcher); ok {
		p.PrefetchDevice(ctx, id)
	}
}

// readStored reads a device's inventory record, posture and verdict in tx.
func readStored(ctx context.Context, tx Tx, id string) (stored, error) {
	prefetch(ctx, tx, id)
	d, err := tx.Inventory().Get(ctx, id)
	if err != nil {
		return stored{}, fmt.Errorf("device %s: %w", id, err)
	}
	r := tx.Compliance()
	p, err := r.Posture(ctx, id)
	if err != nil {
		return stored{}, fmt.Errorf("posture of %s: %w", id, err)
	}
	v, err := r.Verdict(ctx, id)
	if err != nil {
		return stored{}, fmt.Errorf("verdict of %s: %w", id, err)
	}
	return stored{dev: snapshotOf(d), posture: p, verdict: v}, nil
}

// errPoliciesMoved is returned inside a unit of work whose stored policy generation is not the
// one memory evaluates with: another server changed a policy or an assignment, and the feed has
// not brought it here yet.
var errPoliciesMoved = errors.New("compliance: the policies changed on another server")

// checkPolicies fails with errPoliciesMoved when the policies memory evaluates with are not the
// stored ones. Inside a unit of work no other change to them can commit, so a unit of work that
// passes evaluates with the policies in force.
func (e *Engine) checkPolicies(ctx context.Context, tx Tx) error {
	gen, err := tx.Compliance().PolicyGeneration(ctx)
	if err != nil {
		return err
	}
	if gen != e.policies.Generation() {
		return errPoliciesMoved
	}
	return nil
}

// withCurrentPolicies runs commit, a unit of work that calls checkPolicies; when that fails it
// reloads the policies from the store and runs commit again, a few times.
func (e *Engine) withCurrentPolicies(ctx context.Context, commit func() error) error {
	for try := 0; ; try++ {
		err := commit()
		if !errors.Is(err, errPoliciesMoved) || try == 3 {
			return err
		}
		if err := e.policies.Reload(ctx); err != nil {
			return err
		}
	}
}

// reloadMovedPolicies reloads the policies when the stored generation is not memory's.
func (e *Engine) reloadMovedPolicies(ctx context.Context) error {
	err := e.st.View(ctx, func(tx Tx) error { return e.checkPolicies(ctx, tx) })
	if errors.Is(err, errPoliciesMoved) {
		return e.policies.Reload(ctx)
	}
	return err
}

// committed is the outcome of one device's unit of work: what the store held before it, and
// what it holds after.
type committed struct {
	before stored
	p      *policies.Posture
	v      policies.Verdict
	sp     *StoredPolicy
}

// commit evaluates a device, commits and publishes (commitOne): with next, a report, the posture
// becomes next(stored posture); without, the device is evaluated again as stored.
func (e *Engine) commit(ctx context.Context, deviceID string, next func(*policies.Posture) (*policies.Posture, error)) (policies.Verdict, error) {
	e.pass.RLock()
	defer e.pass.RUnlock()
	st, err := e.state(ctx, deviceID)
	if err != nil {
		return policies.Verdict{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return e.commitOne(ctx, st, next)
}

// commitOne evaluates a device from what the store holds, in the unit of work that writes
// the result: with next (a report) the posture becomes next(stored posture) and is stored with
// the verdict it earned; without, the verdict is written only when its outcome changed. Then
// memory, the index and the hooks follow. The caller holds e.pass shared and st.mu.
func (e *Engine) commitOne(ctx context.Context, st *deviceState, next func(*policies.Posture) (*policies.Posture, error)) (policies.Verdict, error) {
	now := e.now().UTC()
	report := next != nil
	unsaved := st.unsavedVerdict()
	var out committed
	// Batch may run the function more than once: it computes everything from what it reads,
	// and a history row appended by a run that did not commit is gone with it.
	err := e.withCurrentPolicies(ctx, func() error {
		return e.st.Batch(ctx, func(tx Tx) error {
			prefetch(ctx, tx, st.id)
			if err := e.checkPolicies(ctx, tx); err != nil {
				return err
			}
			before, err := readStored(ctx, tx, st.id)
			if err != nil {
				return err
			}
			if samePosture(st.posture, before.posture) {
				before.posture = st.posture // the published one: decisions compare postures by identity
			}
			p := before.posture
			if report {
				if p, err = next(before.posture); err != nil {
					return err
				}
				if p.Platform == "" && before.dev.OS != "" {
					p.Platform = policies.Platform(before.dev.OS)
				}
			}
			sp, v, prev, changed, hist := e.evaluateStored(st.id, before, p, unsaved, now)
			if report {
				changed = true // a report is stored with the verdict it earned, evaluated now
				if err := tx.Compliance().PutPosture(ctx, st.id, p); err != nil {
					return err
				}
			} else if !changed {
				v = prev // keep the stored verdict; nothing but the evaluation time moved
			}
			if changed {
				if err := tx.Compliance().PutVerdict(ctx, st.id, &v, hist); err != nil {
					return err
				}
			}
			out = committed{before: before, p: p, v: v, sp: sp}
			return nil
		})
	})
	if err != nil {
		return policies.Verdict{}, fmt.Errorf("compliance: commit posture of %s: %w", st.id, err)
	}
	old := e.storedDecision(st, out.before, unsaved)
	st.dev, st.posture, st.verdict, st.unsaved, st.maxAge = out.before.dev, out.p, out.v, false, reportMaxAge(out.sp)
	if c, ok := e.publish(old, e.decision(st, out.sp), now); ok {
		e.runHooks(ctx, []Change{c})
	}
	return out.v, nil
}

// evaluateStored evaluates a device's posture p against its effective policy, from what the
// store held of it (before), and reports whether the outcome changed from the stored verdict
// (prev; unsaved when none is stored, which always changes) and whether that belongs in the
// history.
func (e *Engine) evaluateStored(id string, before stored, p *policies.Posture, unsaved policies.Verdict, now time.Time) (sp *StoredPolicy, v, prev policies.Verdict, changed, hist bool) {
	prev = unsaved
	if before.verdict != nil {
		prev = *before.verdict
	}
	sp = e.effectiveFor(id, before.dev.Group)
	v = policies.Evaluate(policyOf(sp), p, &prev, now)
	changed, hist = verdictChanged(&prev, &v)
	if before.verdict == nil {
		changed, hist = true, true // the first verdict stored
	}
	return sp, v, prev, changed, hist
}

// samePosture reports whether a posture read from the store is the one memory holds: each
// report is stamped with its own arrival time.
func samePosture(mem, read *policies.Posture) bool {
	if mem == nil || read == nil {
		return mem == read
	}
	return mem.ReportedAt.Equal(read.ReportedAt)
}

// unsavedVerdict is the verdict memory evaluated a device with no stored verdict against
// (Load's), so that its grace runs from then rather than from now; the zero Verdict when
// memory holds a stored one. The caller holds st.mu.
func (st *deviceState) unsavedVerdict() policies.Verdict {
	if st.unsaved {
		return st.verdict
	}
	return policies.Verdict{}
}

// storedDecision is the decision a device had before a commit: its posture and verdict as the
// store held them (another server may have written them since this one published), its state
// as this engine last published it. The state is not taken from the store because the
// inventory change that moved it committed before the engine was told (DeviceChanged), and
// the server that committed it is the one that tells. The report age limit is the published
// decision's. Nil when the device had no decision, stored or published.
func (e *Engine) storedDecision(st *deviceState, before stored, unsaved policies.Verdict) *access.Decision {
	v := unsaved
	switch {
	case before.verdict != nil:
		v = *before.verdict
	case unsaved.EvaluatedAt.IsZero():
		return nil // a device's first decision
	}
	return decisionOf(st.id, st.dev, before.posture, v, st.maxAge)
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

// publish puts a committed decision nd into the index and returns the change for the hooks
// when, compared with old (the decision the store's record gave before the commit, nil for a
// device's first), the allow flipped or the device state changed. The verdict hooks hear of
// every new outcome. Because old comes from the store, of several servers writing one
// database exactly the one whose commit made a transition tells its hooks.
//
// A decision that answers exactly like the published one (only the policy version it was
// evaluated against, or the evaluation time, moved) leaves the published entry alone: the
// index re-encodes an answer on every Put, and a policy edit that changes no outcome would
// otherwise re-encode every device it covers.
func (e *Engine) publish(old, nd *access.Decision, now time.Time) (Change, bool) {
	if cur := e.index.Decision(nd.DeviceID); cur == nil || !sameAnswer(cur, nd) {
		e.index.Put(nd, now)
	}
	if old != nil && sameAnswer(old, nd) {
		return Change{}, false
	}
	e.hooksMu.RLock()
	vhooks := e.verdictHooks
	e.hooksMu.RUnlock()
	for _, h := range vhooks {
		h(old, nd, now)
	}
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
