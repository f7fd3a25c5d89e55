package mdmserver

import (
	"context"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/mydevice"
)

// newMyDevice builds the "my device" page; emergency access must exist.
func (s *Server) newMyDevice() *mydevice.Handler {
	h := &mydevice.Handler{Key: s.key, PublicURL: s.cfg.PublicURL, Decisions: s.index, Devices: s.inventory,
		PolicyFor: s.policyFor, Refresh: s.checkAgain, BreakGlass: s.breakGlass, HelpDesk: s.cfg.helpDesk(), Now: s.now, Log: s.log}
	if s.appAPI != nil {
		s.appAPI.Links = h.LinkFor // the messaging app asks with its attested key
	}
	return h
}

// checkAgain is the page's "check again": an Apple device is asked for fresh posture; any
// other is re-evaluated from what it last reported (an agent reports on its own interval).
func (s *Server) checkAgain(ctx context.Context, d *inventory.Device) (bool, error) {
	if d.Platform == inventory.PlatformApple && s.apple != nil {
		return s.apple.RefreshOne(ctx, d)
	}
	_, err := s.compliance.Evaluate(ctx, d.ID)
	return false, err
}
