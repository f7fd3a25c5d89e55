package mdmserver

import (
	"context"
	"time"

	"github.com/halemdm/hale/mdmserver/gracewarn"
)

// newGraceWarn warns the backends when a device enters grace and grace.warn_before before it
// ends; the index and the events must exist.
func (s *Server) newGraceWarn(o options) *gracewarn.Warner {
	opts := []gracewarn.Option{gracewarn.WithClock(s.now), gracewarn.WithLogger(s.log.With("component", "grace-warnings"))}
	if o.afterFunc != nil {
		opts = append(opts, gracewarn.WithAfterFunc(o.afterFunc))
	}
	w := gracewarn.New(s.index, s.events, s.warnBefore, opts...)
	s.compliance.OnVerdict(w.OnVerdict)
	if s.followsFeed() {
		w.Follow() // until this server holds the background lease (startBackground)
	} else {
		w.Load(context.Background(), s.index.DeviceIDs())
	}
	return w
}

// warnBefore is the named policy's grace.warn_before.
func (s *Server) warnBefore(ctx context.Context, policyName string) time.Duration {
	sp, err := s.policies.Get(ctx, policyName)
	if err != nil || sp == nil || sp.Policy == nil || sp.Policy.Grace == nil {
		return 0
	}
	return time.Duration(sp.Policy.Grace.WarnBefore)
}
