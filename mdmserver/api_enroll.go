package mdmserver

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/certs/scep"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// enrollStore narrows the server's store to what the enrollment service uses.
func enrollStore(st storage.Store) enroll.Store {
	return storage.Scope(st, func(tx storage.Tx) enroll.Tx { return tx })
}

// POST /api/v1/enrollments: {owner, group, platform, ttl} → 201 with the one-time token.
func (s *Server) createEnrollment(w http.ResponseWriter, r *http.Request) {
	req, err := enroll.DecodeRequest(r.Body)
	if err != nil {
		s.enrollDecodeError(w, r, err)
		return
	}
	if t := tokens.FromContext(r.Context()); t != nil {
		req.CreatedBy = t.Name + " (" + t.ID + ")"
	}
	e, token, err := s.enrollments.Create(r.Context(), req)
	if err != nil {
		s.enrollDecodeError(w, r, err)
		return
	}
	s.record(r, event{Action: "enrollment.create", Target: e.ID,
		Details: map[string]string{"owner": e.Owner, "group": e.Group, "platform": string(e.Platform)}})
	out := struct {
		*enroll.Enrollment
		Token      string `json:"token"`
		ProfileURL string `json:"profile_url,omitempty"`
	}{Enrollment: e, Token: token}
	if e.Platform == enroll.PlatformApple {
		out.ProfileURL = enroll.ProfileURL(s.cfg.PublicURL, token)
	}
	httpjson.Write(w, http.StatusCreated, out)
}

func (s *Server) enrollDecodeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, enroll.ErrTooLarge):
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", err.Error())
	case errors.Is(err, enroll.ErrInvalid):
		problem.BadRequest(w, r, err.Error())
	default:
		s.internal(w, r, err)
	}
}

// GET /api/v1/enrollments
func (s *Server) listEnrollments(w http.ResponseWriter, r *http.Request) {
	list, err := s.enrollments.List(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if list == nil {
		list = []*enroll.Enrollment{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"enrollments": list})
}

// DELETE /api/v1/enrollments/{id}
func (s *Server) revokeEnrollment(w http.ResponseWriter, r *http.Request) {
	e, err := s.enrollments.Revoke(r.Context(), r.PathValue("id"))
	if errors.Is(err, enroll.ErrNotFound) {
		problem.NotFound(w, r, "no enrollment "+r.PathValue("id"))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "enrollment.revoke", Target: e.ID})
	httpjson.Write(w, http.StatusOK, e)
}

// allowEnrollAttempt rate-limits enrollment endpoints per source address, so a token cannot be
// guessed by brute force. It answers 429 and counts the refusal when the source is over budget.
func (s *Server) allowEnrollAttempt(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if s.enrollLimiter.Allow(r.RemoteAddr) {
		return true
	}
	s.refuseEnrollment(r, endpoint, "rate_limited")
	w.Header().Set("Retry-After", "5")
	problem.Error(w, r, http.StatusTooManyRequests, "rate-limited", "too many enrollment attempts from this address; wait and retry")
	return false
}

// tokenRefused answers a refused enrollment token: 401 with a reason, counted. Which of
// unknown, expired, revoked or used it was is said: a guesser learns nothing from it (the
// token space is 256 bits), an IT admin learns what to do.
func (s *Server) tokenRefused(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	reason, ok := refusalReason(err)
	if !ok {
		reason = "unknown"
	}
	s.refuseEnrollment(r, endpoint, reason)
	problem.Error(w, r, http.StatusUnauthorized, "enrollment-token-invalid",
		"the enrollment token is "+strings.ReplaceAll(reason, "_", " ")+"; ask IT for a new one")
}

// GET /enroll/apple/{token}: the signed enrollment profile. Fetching it uses the token: the
// profile carries a one-time SCEP challenge bound to this enrollment and the device ID the
// identity certificate must name.
func (s *Server) appleProfile(w http.ResponseWriter, r *http.Request) {
	if !s.allowEnrollAttempt(w, r, refusedAppleProfile) {
		return
	}
	certsInfo, err := s.pushCerts.List(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if len(certsInfo) == 0 {
		problem.Error(w, r, http.StatusConflict, "no-push-certificate",
			"Apple enrollment needs an APNs push certificate: upload one with PUT /api/v1/pushcert")
		return
	}
	e, challenge, err := s.enrollments.RedeemForProfile(r.Context(), r.PathValue("token"))
	if err != nil {
		if errors.Is(err, enroll.ErrInvalid) || errors.Is(err, enroll.ErrUnknown) || errors.Is(err, enroll.ErrExpired) ||
			errors.Is(err, enroll.ErrRevoked) || errors.Is(err, enroll.ErrUsed) || errors.Is(err, enroll.ErrWrongPlatform) {
			s.tokenRefused(w, r, refusedAppleProfile, err)
			return
		}
		s.internal(w, r, err)
		return
	}
	deviceID := inventory.NewID()
	if _, err := s.enrollments.BindDevice(r.Context(), e.ID, deviceID); err != nil {
		s.internal(w, r, err)
		return
	}
	base := strings.TrimSuffix(s.cfg.PublicURL, "/")
	profile, err := enroll.AppleProfile(enroll.ProfileParams{
		Organization: "Hale", RootCA: s.ca.Root(), SCEPURL: base + "/scep", Challenge: challenge,
		SubjectCN: deviceID, SubjectO: "Hale", ServerURL: base + "/mdm", Topic: certsInfo[0].Topic,
	})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	tlsCert, err := s.serverCert.GetCertificate(nil)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	signer, _ := tlsCert.PrivateKey.(crypto.Signer)
	signed, err := enroll.SignProfile(profile, tlsCert.Leaf, signer, []*x509.Certificate{s.ca.Intermediate()})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "enrollment.apple_profile", Target: e.ID,
		Details: map[string]string{"device_id": deviceID, "owner": e.Owner, "group": e.Group}})
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="hale-enroll.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(signed)
}

// scepChallenge holds a SCEP challenge from an Apple enrollment profile for one issuance. Only
// a certificate actually issued spends it, and in the same transaction creates the device the
// profile was made for in the inventory, with the audit entry; a CSR the CA refuses gives the
// challenge back. The claim's device ID is what the identity certificate must name.
func (s *Server) scepChallenge(ctx context.Context, challenge string, _ *x509.CertificateRequest) (*scep.Claim, error) {
	h, err := s.enrollments.HoldChallenge(ctx, challenge)
	if err != nil {
		if reason, ok := refusalReason(err); ok {
			s.tallyRefusal(ctx, remoteAddr(ctx), refusedSCEP, reason)
		} else {
			s.log.ErrorContext(ctx, "SCEP challenge check failed", "err", err)
		}
		return nil, err
	}
	e := h.Enrollment
	if e.DeviceID == "" {
		_ = s.enrollments.ReleaseChallenge(ctx, h)
		return nil, errors.New("enrollment has no device bound")
	}
	commit := func(ctx context.Context, cert *x509.Certificate) error {
		return s.store.Update(ctx, func(tx storage.Tx) error {
			e, err := enroll.SpendChallenge(ctx, tx.Enrollments(), h, s.enrollments.Now())
			if err != nil {
				return err
			}
			devices := tx.Inventory()
			if _, err := devices.Get(ctx, e.DeviceID); errors.Is(err, inventory.ErrNotFound) {
				err = inventory.Save(ctx, devices, &inventory.Device{ID: e.DeviceID, Platform: inventory.PlatformApple,
					Owner: e.Owner, Group: e.Group, Enrollment: e.ID, State: inventory.StateActive, EnrolledAt: time.Now().UTC()}, time.Now())
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
		if err := s.enrollments.ReleaseChallenge(context.WithoutCancel(ctx), h); err != nil {
			// The hold lapses by itself; until then the device's retries are refused.
			s.log.ErrorContext(ctx, "cannot release a SCEP challenge", "enrollment", e.ID, "err", err)
		}
		if errors.Is(why, certs.ErrBadRequest) {
			s.tallyRefusal(ctx, remoteAddr(ctx), refusedSCEP, "csr_refused")
		}
	}
	return &scep.Claim{DeviceID: e.DeviceID, Commit: commit, Release: release}, nil
}
