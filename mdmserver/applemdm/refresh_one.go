package applemdm

import (
	"context"

	"github.com/halemdm/hale/mdmserver/inventory"
)

// RefreshOne asks one Apple device for fresh posture now (its user pressed "check again" on
// the my-device page), unless a posture query to it is still unanswered. It reports whether it
// asked.
func (s *Service) RefreshOne(ctx context.Context, d *inventory.Device) (bool, error) {
	if d.Platform != inventory.PlatformApple || d.State != inventory.StateActive || d.EnrollmentID == "" ||
		s.postureQueryWaiting(ctx, d.EnrollmentID) {
		return false, nil
	}
	for _, c := range postureQueries(d.UserEnrollment) {
		if _, err := s.d.Dispatch.Send(ctx, d.EnrollmentID, c, "device:"+d.ID+" (check again)"); err != nil {
			return false, err
		}
	}
	return true, nil
}
