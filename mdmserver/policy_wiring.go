package mdmserver

import "context"

// policyChanges re-evaluates every device after a policy or assignment change, then delivers
// the new profiles to Apple devices in the background (APNs pushes take their time; Close waits
// for them).
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
}
