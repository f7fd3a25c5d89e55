package applemdm

import (
	"context"
	"time"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// RefreshPosture keeps Apple devices' posture fresh: every tick it asks the devices whose newest
// report is older than their policy's reporting interval for their posture again (RefreshDue).
// An Apple device reports only when asked (or, on declarative management, when a status item
// changes), so without this a healthy phone turns stale after reporting.max_age and is denied.
// It returns when ctx is done.
func (s *Service) RefreshPosture(ctx context.Context, every time.Duration) {
	for {
		if n, err := s.RefreshDue(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "refreshing Apple posture failed", "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "asked Apple devices for fresh posture", "devices", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// RefreshDue queues the posture queries, with a push, for every active Apple device under a
// policy whose newest report is at least the policy's reporting interval old (a third of
// reporting.max_age by default, so two lost answers still leave it fresh), unless a posture
// query is already waiting for it: a device that is off gets one set of queries, not one a tick.
// It returns how many devices it asked.
func (s *Service) RefreshDue(ctx context.Context) (int, error) {
	now := s.now()
	var due []*inventory.Device
	err := s.d.Inventory.ForEach(ctx, func(d *inventory.Device) error {
		if d.Platform != inventory.PlatformApple || d.State != inventory.StateActive || d.EnrollmentID == "" {
			return nil
		}
		sp, err := s.d.Compliance.Policies().Effective(d)
		if err != nil || sp == nil {
			return nil // no policy: nothing to be fresh for
		}
		if _, p, ok := s.d.Compliance.Verdict(d.ID); ok && p != nil && now.Sub(p.ReportedAt) < sp.Policy.ReportInterval() {
			return nil
		}
		due = append(due, d)
		return nil
	})
	if err != nil {
		return 0, err
	}
	asked := 0
	for _, d := range due {
		if s.postureQueryWaiting(ctx, d.EnrollmentID) {
			continue
		}
		for _, c := range postureQueries(d.UserEnrollment) {
			if _, err := s.d.Dispatch.Enqueue(ctx, d.EnrollmentID, c, "system:refresh"); err != nil {
				s.log.WarnContext(ctx, "queue posture query", "device_id", d.ID, "request_type", c.RequestType, "err", err)
			}
		}
		asked++
	}
	return asked, ctx.Err()
}

// postureQueryWaiting reports whether a posture query to the enrollment has not been answered
// yet (an unreadable list counts as waiting: ask again next tick).
func (s *Service) postureQueryWaiting(ctx context.Context, enrollmentID string) bool {
	list, err := s.d.Commands.List(ctx, enrollmentID)
	if err != nil {
		return true
	}
	for _, rec := range list {
		if !rec.State.Final() && isPostureQuery(rec.RequestType) {
			return true
		}
	}
	return false
}

func isPostureQuery(requestType string) bool {
	for _, c := range postureQueries(false) {
		if c.RequestType == requestType {
			return true
		}
	}
	return false
}

// postureQueries are the commands that tell Hale an Apple device's posture. A user-enrolled
// (personal) device does not answer Restrictions (Apple's schema: forbidden there).
func postureQueries(userEnrollment bool) []commands.Command {
	qs := []commands.Command{
		DeviceInformation(nil),
		{RequestType: "SecurityInfo"},
		{RequestType: "ProfileList"},
	}
	if !userEnrollment {
		qs = append(qs, commands.Command{RequestType: "Restrictions"})
	}
	return qs
}
