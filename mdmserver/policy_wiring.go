package mdmserver

import "context"

// policyChanges re-evaluates every device after a policy or assignment change, then delivers
// the new profiles to Apple devices and the new AMAPI policies to Android phones (a reconcile:
// each phone's policy is patched and the phone moved to it) in the background (APNs pushes and
// API calls take their time; Close waits for them).
type policyChanges struct{ s *Server }

func (p policyChanges) PoliciesChanged(ctx context.Context) {
	s := p.s
	stats, err := s.compliance.ReevaluateAll(context.WithoutCancel(ctx))
	if err != nil {
		s.log.ErrorContext(ctx, "re-evaluation after a policy change failed", "err", err)
	} else {
		s.log.InfoContext(ctx, "re-evaluated devices", "devices", stats.Devices, "changed", stats.Changed, "took", stats.Took)
	}
	s.background.Go(func() { s.apple.DeliverPolicies(context.WithoutCancel(ctx)) })
	s.background.Go(func() {
		if n, err := s.android.Reconcile(context.WithoutCancel(ctx)); err != nil {
			s.log.WarnContext(ctx, "android policies not all delivered; the hourly reconcile retries", "devices", n, "err", err)
		}
	})
}
