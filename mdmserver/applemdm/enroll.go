package applemdm

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/certs/scep"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// SCEP is the /scep endpoint: Hale's CA issuing Apple device identities, each against the
// one-time challenge of an enrollment profile.
func (s *Service) SCEP() http.Handler { return s.scep }

// EnrollmentProfile is GET /enroll/apple/{token}: the signed enrollment profile. Fetching it
// uses the token: the profile carries a one-time SCEP challenge bound to this enrollment and the
// device ID the identity certificate must name.
func (s *Service) EnrollmentProfile(w http.ResponseWriter, r *http.Request) {
	if !s.d.Refusals.Allow(w, r, EndpointProfile) {
		return
	}
	p, err := s.enrollmentProfile(r.Context(), r.PathValue("token"), false)
	switch {
	case errors.Is(err, errNoPushCert):
		problem.Error(w, r, http.StatusConflict, "no-push-certificate",
			"Apple enrollment needs an APNs push certificate: upload one with PUT /api/v1/pushcert")
		return
	case errors.As(err, new(refusedToken)):
		s.d.Refusals.TokenRefused(w, r, EndpointProfile, errors.Unwrap(err))
		return
	case err != nil:
		httpapi.Internal(s.log, w, r, err)
		return
	}
	_ = s.auditor().Record(r, httpapi.Event{Action: "enrollment.apple_profile", Target: p.enrollment.ID,
		Details: map[string]string{"device_id": p.deviceID, "owner": p.enrollment.Owner, "group": p.enrollment.Group}})
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="hale-enroll.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(p.signed)
}

// errNoPushCert refuses an enrollment profile while no APNs push certificate is uploaded: its
// device could never be woken.
var errNoPushCert = errors.New("applemdm: no push certificate")

// refusedToken is an enrollment token the enrollment rules refused: unknown, expired, revoked,
// used, or another platform's.
type refusedToken struct{ err error }

func (t refusedToken) Error() string { return t.err.Error() }
func (t refusedToken) Unwrap() error { return t.err }

// profile is a signed enrollment profile and what it was made for.
type profile struct {
	enrollment *enroll.Enrollment
	deviceID   string
	signed     []byte
}

// enrollmentProfile redeems an Apple enrollment token for its profile: it binds a new device ID
// to the enrollment, and the profile names that ID, a SCEP challenge for it, the MDM server and
// the push topic.
func (s *Service) enrollmentProfile(ctx context.Context, token string, byod bool) (*profile, error) {
	certsInfo, err := s.d.PushCerts.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(certsInfo) == 0 {
		return nil, errNoPushCert
	}
	e, challenge, err := s.d.Enrollments.RedeemForProfile(ctx, token, byod)
	if errors.Is(err, enroll.ErrInvalid) || errors.Is(err, enroll.ErrUnknown) || errors.Is(err, enroll.ErrExpired) ||
		errors.Is(err, enroll.ErrRevoked) || errors.Is(err, enroll.ErrUsed) || errors.Is(err, enroll.ErrWrongPlatform) {
		return nil, refusedToken{err}
	} else if err != nil {
		return nil, err
	}
	deviceID := inventory.NewID()
	if _, err := s.d.Enrollments.BindDevice(ctx, e.ID, deviceID); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(s.d.PublicURL, "/")
	unsigned, err := enroll.AppleProfile(enroll.ProfileParams{
		Organization: "Hale", RootCA: s.d.CA.Root(), SCEPURL: base + "/scep", Challenge: challenge,
		SubjectCN: deviceID, SubjectO: "Hale", ServerURL: base + "/mdm", Topic: certsInfo[0].Topic,
		ManagedAppleID: e.ManagedAppleID, // set on BYOD enrollments only: a user enrollment
	})
	if err != nil {
		return nil, err
	}
	signed, err := profileSigner{s}.Sign(unsigned)
	if err != nil {
		return nil, err
	}
	return &profile{enrollment: e, deviceID: deviceID, signed: signed}, nil
}

// scepChallenge holds a SCEP challenge from an Apple enrollment profile for one issuance. Only
// a certificate actually issued spends it, and in the same transaction creates the device the
// profile was made for in the inventory, with the audit entry; a CSR the CA refuses gives the
// challenge back. The claim's device ID is what the identity certificate must name.
func (s *Service) scepChallenge(ctx context.Context, challenge string, _ *x509.CertificateRequest) (*scep.Claim, error) {
	h, err := s.d.Enrollments.HoldChallenge(ctx, challenge)
	if err != nil {
		if !s.d.Refusals.Refused(ctx, remoteAddr(ctx), EndpointSCEP, err) {
			s.log.ErrorContext(ctx, "SCEP challenge check failed", "err", err)
		}
		return nil, err
	}
	e := h.Enrollment
	if e.DeviceID == "" {
		_ = s.d.Enrollments.ReleaseChallenge(ctx, h)
		return nil, errors.New("enrollment has no device bound")
	}
	commit := func(ctx context.Context, cert *x509.Certificate) error {
		return s.d.Store.Update(ctx, func(tx Tx) error {
			e, err := enroll.SpendChallenge(ctx, tx.Enrollments(), h, s.d.Enrollments.Now())
			if err != nil {
				return err
			}
			devices := tx.Inventory()
			if _, err := devices.Get(ctx, e.DeviceID); errors.Is(err, inventory.ErrNotFound) {
				err = inventory.Save(ctx, devices, &inventory.Device{ID: e.DeviceID, Platform: inventory.PlatformApple,
					Owner: e.Owner, Group: e.Group, Enrollment: e.ID, State: inventory.StateActive, EnrolledAt: time.Now().UTC(),
					UserEnrollment: e.BYOD}, time.Now())
				if err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			_, err = audit.Append(ctx, tx.Audit(), audit.Entry{Actor: "device:" + e.DeviceID, Role: "device", Action: "enrollment.scep",
				Target: e.DeviceID, Outcome: audit.OutcomeOK, Details: map[string]string{"enrollment": e.ID, "serial": inventory.SerialHex(cert.SerialNumber)}})
			return err
		})
	}
	release := func(ctx context.Context, why error) {
		if err := s.d.Enrollments.ReleaseChallenge(context.WithoutCancel(ctx), h); err != nil {
			// The hold lapses by itself; until then the device's retries are refused.
			s.log.ErrorContext(ctx, "cannot release a SCEP challenge", "enrollment", e.ID, "err", err)
		}
		if errors.Is(why, certs.ErrBadRequest) {
			s.d.Refusals.Tally(ctx, remoteAddr(ctx), EndpointSCEP, "csr_refused")
		}
	}
	return &scep.Claim{DeviceID: e.DeviceID, Commit: commit, Release: release}, nil
}

type remoteAddrKey struct{}

// withRemoteAddr gives h's request context the caller's address, for code below h that sees
// only the context (the SCEP challenge check).
func withRemoteAddr(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), remoteAddrKey{}, r.RemoteAddr)))
	})
}

// remoteAddr returns the caller's address withRemoteAddr put in ctx, or "".
func remoteAddr(ctx context.Context) string {
	a, _ := ctx.Value(remoteAddrKey{}).(string)
	return a
}
