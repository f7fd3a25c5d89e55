package breakglass

import (
	"context"
	"fmt"

	"github.com/halemdm/hale/mdmserver/access"
)

// Refresh makes the index's grant for the device of use id what the store says: the grant of
// the device's use in force now (the latest started, should the store hold more than one), or
// none. A server calls it when another server wrote use id: started,
// ended at expiry, revoked or reviewed. It reads only: no timer (the grant carries its expiry,
// past which the index denies by itself), no audit entry, no event (the server that wrote the
// use recorded and sent them). The device's other uses are read too, so a late change to an
// old use (its review) never drops a newer use's grant. A missing use is an error wrapping
// ErrNotFound and changes nothing.
func (s *Service) Refresh(ctx context.Context, id string) error {
	var u *Use
	var all []*Use
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		if u, err = tx.BreakGlass().Get(ctx, id); err != nil {
			return err
		}
		all, err = tx.BreakGlass().List(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("breakglass: refresh use %s: %w", id, err)
	}
	s.setGrants(all, map[string]bool{u.DeviceID: true})
	return nil
}

// RefreshAll is Refresh for every device that has a use: what an access replica runs when it
// (re)loads everything, instead of Load, which ends the expired uses and so writes.
func (s *Service) RefreshAll(ctx context.Context) error {
	var all []*Use
	err := s.st.View(ctx, func(tx Tx) (err error) {
		all, err = tx.BreakGlass().List(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("breakglass: refresh uses: %w", err)
	}
	devices := map[string]bool{}
	for _, u := range all {
		devices[u.DeviceID] = true
	}
	s.setGrants(all, devices)
	return nil
}

// setGrants gives each of devices the grant of its use in force now among all, or none.
func (s *Service) setGrants(all []*Use, devices map[string]bool) {
	now := s.now()
	live := map[string]*Use{}
	for _, u := range all {
		if l := live[u.DeviceID]; devices[u.DeviceID] && u.Active(now) && (l == nil || u.StartedAt.After(l.StartedAt)) {
			live[u.DeviceID] = u
		}
	}
	for d := range devices {
		if u := live[d]; u != nil {
			s.decisions.SetBreakGlass(d, &access.Grant{ID: u.ID, ExpiresAt: u.ExpiresAt, May: u.May}, now)
		} else {
			s.decisions.SetBreakGlass(d, nil, now)
		}
	}
}
