package applemdm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// enrollmentGuard is the outermost decorator of nanomdm's service. nanomdm's certauth, below
// it, trusts any identity it has not seen before on an Authenticate and writes the association
// at once; nanomdm then clears the enrollment's command queue. So before anything is written,
// the guard checks that the identity may speak for the device the message names:
//
//   - the identity's own device record (its subject names it) is a live Apple device that is
//     not linked to another UDID;
//   - the UDID's enrollment belongs to that record, or to no one, or to a device that has ended
//     (wiped or unenrolled, enrolling again as a new record), or the identity is one the record
//     holds (an identity from an extra device CA that authenticated before);
//   - an Authenticate, which clears the queue, does not drop a lock or wipe still on its way.
//
// Other messages need no more than certauth's check that the identity is the one associated
// with the enrollment; the guard only refuses those that name no device.
type enrollmentGuard struct {
	service.CheckinAndCommandService
	inventory *inventory.Service
	commands  *commands.Service
}

// Authenticate admits a device's first check-in only for an identity that owns the enrollment.
func (g *enrollmentGuard) Authenticate(r *mdm.Request, m *mdm.Authenticate) error {
	if err := g.checkOwner(r.Context(), r, &m.Enrollment, true); err != nil {
		return err
	}
	return g.CheckinAndCommandService.Authenticate(r, m)
}

// TokenUpdate admits a push token only from an identity that owns the enrollment.
func (g *enrollmentGuard) TokenUpdate(r *mdm.Request, m *mdm.TokenUpdate) error {
	if err := g.checkOwner(r.Context(), r, &m.Enrollment, false); err != nil {
		return err
	}
	return g.CheckinAndCommandService.TokenUpdate(r, m)
}

// CheckOut refuses a message that names no device.
func (g *enrollmentGuard) CheckOut(r *mdm.Request, m *mdm.CheckOut) error {
	if err := named(&m.Enrollment); err != nil {
		return err
	}
	return g.CheckinAndCommandService.CheckOut(r, m)
}

// UserAuthenticate refuses a message that names no device.
func (g *enrollmentGuard) UserAuthenticate(r *mdm.Request, m *mdm.UserAuthenticate) ([]byte, error) {
	if err := named(&m.Enrollment); err != nil {
		return nil, err
	}
	return g.CheckinAndCommandService.UserAuthenticate(r, m)
}

// SetBootstrapToken refuses a message that names no device.
func (g *enrollmentGuard) SetBootstrapToken(r *mdm.Request, m *mdm.SetBootstrapToken) error {
	if err := named(&m.Enrollment); err != nil {
		return err
	}
	return g.CheckinAndCommandService.SetBootstrapToken(r, m)
}

// GetBootstrapToken refuses a message that names no device.
func (g *enrollmentGuard) GetBootstrapToken(r *mdm.Request, m *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	if err := named(&m.Enrollment); err != nil {
		return nil, err
	}
	return g.CheckinAndCommandService.GetBootstrapToken(r, m)
}

// DeclarativeManagement refuses a message that names no device.
func (g *enrollmentGuard) DeclarativeManagement(r *mdm.Request, m *mdm.DeclarativeManagement) ([]byte, error) {
	if err := named(&m.Enrollment); err != nil {
		return nil, err
	}
	return g.CheckinAndCommandService.DeclarativeManagement(r, m)
}

// GetToken refuses a message that names no device.
func (g *enrollmentGuard) GetToken(r *mdm.Request, m *mdm.GetToken) (*mdm.GetTokenResponse, error) {
	if err := named(&m.Enrollment); err != nil {
		return nil, err
	}
	return g.CheckinAndCommandService.GetToken(r, m)
}

// CommandAndReportResults refuses a message that names no device.
func (g *enrollmentGuard) CommandAndReportResults(r *mdm.Request, m *mdm.CommandResults) (*mdm.Command, error) {
	if err := named(&m.Enrollment); err != nil {
		return nil, err
	}
	return g.CheckinAndCommandService.CommandAndReportResults(r, m)
}

// named refuses a message without a UDID or EnrollmentID with 400: nanomdm would fail it later
// with a 500.
func named(e *mdm.Enrollment) error {
	if e.Resolved() == nil {
		return problem.New(http.StatusBadRequest, "invalid-mdm-message", "the message names no device: UDID or EnrollmentID is required")
	}
	return nil
}

// notOwned is the refusal of an identity that does not own the enrollment it names.
func notOwned(format string, args ...any) error {
	return problem.New(http.StatusForbidden, "enrollment-not-owned", fmt.Sprintf(format, args...))
}

// checkOwner enforces the rules in enrollmentGuard's doc comment, reading only.
func (g *enrollmentGuard) checkOwner(ctx context.Context, r *mdm.Request, e *mdm.Enrollment, authenticate bool) error {
	if err := named(e); err != nil {
		return err
	}
	eid := e.Resolved().DeviceChannelID
	cert := r.Certificate
	if cert == nil {
		return problem.New(http.StatusForbidden, "identity-required", "the message carries no identity certificate")
	}
	var own *inventory.Device
	if id := cert.Subject.CommonName; inventory.ValidID(id) {
		d, err := g.inventory.Get(ctx, id)
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		own = d
	}
	switch {
	case own == nil && certs.KindOf(cert) != 0:
		return notOwned("the identity names no enrolled device")
	case own == nil:
		// An identity from an extra device CA, not enrolled through Hale: the enrollment decides.
	case own.Platform != inventory.PlatformApple:
		return notOwned("the identity belongs to %s device %s, not to an Apple device", own.Platform, own.ID)
	case own.State.Ended():
		return notOwned("device %s is %s; enroll it again with a new profile", own.ID, own.State)
	case own.EnrollmentID != "" && own.EnrollmentID != eid:
		return notOwned("the identity belongs to device %s, which is enrolled as another device", own.ID)
	}

	holder, err := g.inventory.GetByEnrollmentID(ctx, eid)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		return nil
	case err != nil:
		return err
	case own != nil && holder.ID == own.ID:
	case holder.State.Ended():
		return nil // a device enrolling again after a wipe or unenrollment: a new record takes over
	case slices.Contains(holder.CertSHA256, inventory.CertFingerprint(cert)):
	default:
		return notOwned("this device is enrolled as %s; the identity does not belong to it", holder.ID)
	}
	if !authenticate {
		return nil
	}
	// nanomdm clears the queue on Authenticate: a lock or wipe on its way must not be dropped.
	open, err := g.commands.Open(ctx, eid)
	if err != nil {
		return err
	}
	for _, c := range open {
		if SecurityCommand(c.RequestType) {
			return problem.New(http.StatusConflict, "security-command-pending", fmt.Sprintf(
				"device %s has a %s on its way (command %s); it cannot enroll again before that is delivered", holder.ID, c.RequestType, c.UUID))
		}
	}
	return nil
}
