package access

import (
	"slices"
	"time"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// Grant is an emergency access use (break-glass) as the index applies it: until ExpiresAt, a
// device denied only for reasons in May is allowed, and its answer says so.
type Grant struct {
	ID        string
	ExpiresAt time.Time
	// May are the reason codes the use may let through: the policy's overridable list (sorted).
	May []string
}

// NeverOverridden are the access reasons no emergency access use lets through: the device is
// gone, in other hands or not ours (the policy's own never-list covers integrity).
var NeverOverridden = []string{
	ReasonLocked, ReasonLost, ReasonWiped, ReasonWipePending, ReasonWipeIncomplete, ReasonUnenrolled, ReasonRetired,
	ReasonCertRevoked, ReasonUnknownCert, ReasonUnknownDevice, ReasonIndexNotLoaded, ReasonIndexStale, ReasonInternalError,
	ReasonInvalidDeviceID, ReasonInvalidSubject, ReasonInvalidToken,
}

// lets reports whether g, at now, lets a device denied for reasons through, and the answer's
// break_glass member if it does: every reason must be one the use may override
// (noncompliant_past_grace stands for the verdict's own reasons, which are listed beside it).
func (g *Grant) lets(reasons []policies.Reason, now time.Time) (bool, *posture.BreakGlass) {
	if !now.Before(g.ExpiresAt) {
		return false, nil
	}
	codes := make([]string, 0, len(reasons))
	for _, r := range reasons {
		switch {
		case slices.Contains(NeverOverridden, r.Code):
			return false, nil
		case r.Code == ReasonGraceExpired:
		case !slices.Contains(g.May, r.Code):
			return false, nil
		}
		if !slices.Contains(codes, r.Code) {
			codes = append(codes, r.Code)
		}
	}
	return true, &posture.BreakGlass{ID: g.ID, ExpiresAt: g.ExpiresAt.UTC(), Overrides: codes}
}

// Overridable reports which of a denied answer's reasons a use allowed to override may would
// not let through (nil: all of them would).
func Overridable(a Answer, may []string) (refused []string) {
	for _, r := range a.Reasons {
		if slices.Contains(NeverOverridden, r.Code) || (r.Code != ReasonGraceExpired && !slices.Contains(may, r.Code)) {
			refused = append(refused, r.Code)
		}
	}
	return refused
}

// SetBreakGlass puts (g not nil) or removes the emergency access use of a device and re-derives
// its answer at once. The grant survives the compliance engine's Puts until it is removed.
func (x *Index) SetBreakGlass(deviceID string, g *Grant, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if g == nil {
		delete(x.grants, deviceID)
	} else {
		x.grants[deviceID] = g
	}
	if e := x.entries[deviceID]; e != nil {
		d := *e.d
		d.BreakGlass = g
		x.entries[deviceID] = newEntry(&d, now, e)
	}
	x.changedAt.Store(time.Now().UnixNano())
}

// DeviceIDs returns the IDs of every indexed device, in no order.
func (x *Index) DeviceIDs() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ids := make([]string, 0, len(x.entries))
	for id := range x.entries {
		ids = append(ids, id)
	}
	return ids
}

// BreakGlass returns the emergency access use in force for a device, or nil.
func (x *Index) BreakGlass(deviceID string) *Grant {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.grants[deviceID]
}
