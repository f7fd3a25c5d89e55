package compliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Following other servers: what another server committed (the change feed names the devices)
// is read and published here silently: the server that made each change already ran the hooks
// (security events, warnings) for it, and they must not run twice.

// records reads the stored postures and verdicts of the wanted devices, by key.
func records(ctx context.Context, r Repository, want map[string]bool) (map[string]*policies.Posture, map[string]*policies.Verdict, error) {
	postures := make(map[string]*policies.Posture, len(want))
	verdicts := make(map[string]*policies.Verdict, len(want))
	for id := range want {
		p, err := r.Posture(ctx, id)
		if err != nil {
			return nil, nil, fmt.Errorf("posture of %s: %w", id, err)
		}
		v, err := r.Verdict(ctx, id)
		if err != nil {
			return nil, nil, fmt.Errorf("verdict of %s: %w", id, err)
		}
		if p != nil {
			postures[id] = p
		}
		if v != nil {
			verdicts[id] = v
		}
	}
	return postures, verdicts, nil
}

// refreshed is what the store holds of one device, read by Refresh.
type refreshed struct {
	dev     *inventory.Device // nil: gone from the inventory
	posture *policies.Posture
	verdict *policies.Verdict
}

// Refresh makes the engine's memory and the access index say what the store holds of the
// given devices: each one's inventory record, stored posture and stored verdict, all read in one
// View. A device the engine did not know (enrolled through another server) is added; a device
// gone from the inventory is dropped and its index entry deleted (it then answers
// unknown_device). A device without a stored verdict is evaluated in memory, as Load does.
//
// Refresh is how a server follows the others writing the same database: it writes nothing and
// runs no ChangeFunc or VerdictFunc hook (the server that made a change ran them). The devices
// are locked before the store is read, so a report this engine commits meanwhile is either in
// what is read or published after it: an older read never replaces a newer commit. On an error
// nothing is changed.
func (e *Engine) Refresh(ctx context.Context, deviceIDs ...string) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	e.pass.RLock()
	defer e.pass.RUnlock()
	ids := slices.Compact(slices.Sorted(slices.Values(deviceIDs)))
	states, unlock := e.lockStates(ids)
	defer unlock()
	got := make(map[string]*refreshed, len(ids))
	err := e.st.View(ctx, func(tx Tx) error {
		clear(got)
		live := map[string]bool{}
		for _, id := range ids {
			d, err := tx.Inventory().Get(ctx, id)
			switch {
			case errors.Is(err, inventory.ErrNotFound):
				got[id] = &refreshed{}
				continue
			case err != nil:
				return fmt.Errorf("device %s: %w", id, err)
			}
			got[id] = &refreshed{dev: d}
			live[id] = true
		}
		if len(live) == 0 {
			return nil
		}
		postures, verdicts, err := records(ctx, tx.Compliance(), live)
		if err != nil {
			return err
		}
		for id := range live {
			got[id].posture, got[id].verdict = postures[id], verdicts[id]
			if v := verdicts[id]; v != nil && v.EvaluatedAt.IsZero() {
				return fmt.Errorf("stored verdict of %s has no evaluation time", id)
			}
		}
		return nil
	})
	if err != nil {
		for i, st := range states {
			if st.placeholder {
				e.forget(ids[i]) // nothing read: the device stays unknown
			}
		}
		return fmt.Errorf("compliance: refresh: %w", err)
	}
	now := e.now().UTC()
	for i, id := range ids {
		if r := got[id]; r.dev != nil {
			e.refreshOne(states[i], r, now)
		} else {
			e.forget(id)
		}
	}
	return nil
}

// lockStates locks the in-memory states of ids (sorted), adding a locked placeholder for a
// device the engine does not know: whoever finds it waits for Refresh to fill it. unlock
// unlocks them all. The caller holds e.pass shared.
func (e *Engine) lockStates(ids []string) (states []*deviceState, unlock func()) {
	states = make([]*deviceState, len(ids))
	for i, id := range ids {
		e.mu.Lock()
		st := e.devices[id]
		if st == nil {
			st = &deviceState{id: id, placeholder: true}
			st.mu.Lock()
			e.devices[id] = st
			e.order = append(e.order, id)
			e.sorted = false
			e.mu.Unlock()
		} else {
			e.mu.Unlock()
			st.mu.Lock()
		}
		states[i] = st
	}
	return states, func() {
		for _, st := range states {
			st.mu.Unlock()
		}
	}
}

// refreshOne replaces the in-memory state of a device with what was read and publishes its
// decision silently. The caller holds e.pass shared and st.mu.
func (e *Engine) refreshOne(st *deviceState, r *refreshed, now time.Time) {
	st.placeholder = false
	st.dev, st.posture = snapshotOf(r.dev), r.posture
	sp := e.effective(st)
	if r.verdict != nil {
		st.verdict, st.unsaved = *r.verdict, false
	} else {
		st.verdict, st.unsaved = policies.Evaluate(policyOf(sp), st.posture, nil, now), true
	}
	st.maxAge = reportMaxAge(sp)
	e.putSilently(e.decision(st, sp), now)
}

// forget drops a device gone from the inventory from memory and from the index.
func (e *Engine) forget(id string) {
	e.mu.Lock()
	if _, ok := e.devices[id]; ok {
		delete(e.devices, id)
		if i := slices.Index(e.order, id); i >= 0 {
			e.order = slices.Delete(e.order, i, i+1)
		}
	}
	e.mu.Unlock()
	e.index.Delete(id)
}

// putSilently puts a decision into the index without telling any hook, leaving the published
// entry alone when it answers the same (as publish does, so a replica's answers match the
// primary's).
func (e *Engine) putSilently(nd *access.Decision, now time.Time) {
	if old := e.index.Decision(nd.DeviceID); old != nil && sameAnswer(old, nd) {
		return
	}
	e.index.Put(nd, now)
}

// PoliciesChanged reloads the policies and assignments from the store (PolicyStore.Reload) and
// republishes every device's decision from its in-memory state under its new effective policy:
// the report age limit moves the decision's StaleAt, and a device without a stored verdict is
// evaluated again in memory. Stored verdicts are kept: the server that changed the policy
// re-evaluates and writes the verdicts that moved, which reach the others through Refresh. Like
// Refresh it writes nothing and runs no hook. On an error the policies and decisions are left
// as they were.
func (e *Engine) PoliciesChanged(ctx context.Context) error {
	e.pass.Lock()
	defer e.pass.Unlock()
	if err := e.policies.Reload(ctx); err != nil {
		return err
	}
	now := e.now().UTC()
	e.mu.RLock()
	states := make([]*deviceState, 0, len(e.devices))
	for _, st := range e.devices {
		states = append(states, st)
	}
	e.mu.RUnlock()
	for _, st := range states {
		st.mu.Lock() // Verdict reads without holding e.pass
		sp := e.effective(st)
		if st.unsaved {
			st.verdict = policies.Evaluate(policyOf(sp), st.posture, nil, now)
		}
		st.maxAge = reportMaxAge(sp)
		d := e.decision(st, sp)
		st.mu.Unlock()
		e.putSilently(d, now)
	}
	return nil
}
