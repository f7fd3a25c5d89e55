package appinstances

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/appattest"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/playintegrity"
	"github.com/halemdm/hale/policies"
)

// Provenances of app claims, as policies names them.
const (
	SourceApp      = policies.ProvenanceApp
	SourceAttested = policies.ProvenanceAttested
)

// Posture is what an app instance established about its device: claims the app reported under
// a valid signature of its attested key (provenance app), and what Apple or Google signed
// (provenance attested).
type Posture struct {
	// Attested is that the instance registered with a valid App Attest or Play Integrity proof.
	Attested       *policies.Claim[bool]   `json:"app_attested,omitempty"`
	PasscodeSet    *policies.Claim[bool]   `json:"passcode_set,omitempty"`
	Jailbroken     *policies.Claim[bool]   `json:"jailbroken,omitempty"`
	ScreenCaptured *policies.Claim[bool]   `json:"screen_captured,omitempty"`
	AppVersion     *policies.Claim[string] `json:"app_version,omitempty"`
	OSVersion      *policies.Claim[string] `json:"os_version,omitempty"`
}

func observe[T any](v T, src policies.Provenance, at time.Time) *policies.Claim[T] {
	return policies.Observe(v, src, at)
}

// MaxClientData bounds a report's signed bytes.
const MaxClientData = 4 << 10

// Report verifies a report's signature with the instance's key (an App Attest assertion on iOS,
// ES256 on Android), its nonce, and on Android an optional fresh Play Integrity verdict, then
// records its claims. The new counter, the claims and the audit entry commit together; a
// refused report changes nothing. A revoked instance, or one whose device was wiped or
// unenrolled, is refused (and marked revoked).
func (s *Service) Report(ctx context.Context, req api.AppReportRequest, entry audit.Entry) (*Instance, error) {
	if req.InstanceID == "" || len(req.InstanceID) > 64 {
		return nil, refuse(ErrInvalid, "invalid-request", "instance_id is required")
	}
	data, err := decodeB64("client_data", req.ClientData, MaxClientData)
	if err != nil {
		return nil, err
	}
	sig, err := decodeB64("assertion", req.Assertion, appattest.MaxAssertionSize)
	if err != nil {
		return nil, err
	}
	var rd api.AppReportData
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rd); err != nil {
		return nil, refuse(ErrInvalid, "invalid-request", "client_data is not an AppReportData JSON object: %v", err)
	}
	in, err := s.usable(ctx, req.InstanceID)
	if err != nil {
		return nil, err
	}
	pub, err := instanceKey(in)
	if err != nil {
		return nil, err
	}
	counter := in.Counter
	switch in.Platform {
	case IOS:
		if s.d.IOS == nil {
			return nil, refuse(ErrUnavailable, "platform-not-configured", "iOS app instances are not configured")
		}
		if counter, err = s.d.IOS.VerifyAssertion(sig, data, pub, in.Counter); err != nil {
			return nil, refuse(ErrUnauthorized, appattest.ReasonOf(err), "%v", err)
		}
	case Android:
		digest := sha256.Sum256(data)
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return nil, refuse(ErrUnauthorized, "signature-invalid", "the report's signature does not verify with the instance's key")
		}
	}
	// The nonce is spent only once the signature holds, so a forger cannot burn a real app's nonce.
	if !s.d.Nonces.Use(rd.Nonce) {
		return nil, refuse(ErrUnauthorized, "nonce-invalid", "the nonce is unknown, used or expired: ask POST /app/v1/nonce for a new one")
	}
	now := s.d.Now().UTC()
	var rooted *bool
	if req.IntegrityToken != "" {
		if in.Platform != Android || s.d.Android == nil {
			return nil, refuse(ErrInvalid, "invalid-request", "integrity_token is for Android instances")
		}
		v, err := s.d.Android.Verify(req.IntegrityToken, api.AppRequestHash(rd.Nonce, data))
		if err != nil {
			return nil, refuse(ErrUnauthorized, playintegrity.ReasonOf(err), "%v", err)
		}
		rooted = &v.Rooted
	}
	var out *Instance
	err = s.d.Store.Update(ctx, func(tx Tx) error {
		r := tx.AppInstances()
		cur, err := r.Instance(ctx, in.ID)
		if err != nil {
			return err
		}
		// Another report may have committed since the check: its counter wins, and an equal or
		// lower one here is the replay it looks like.
		if in.Platform == IOS && counter <= cur.Counter {
			return refuse(ErrUnauthorized, appattest.ReasonAssertionReplay, "assertion counter %d is not above %d", counter, cur.Counter)
		}
		if cur.Revoked() {
			return refuse(ErrForbidden, "instance-revoked", "the app instance was revoked: %s", cur.RevokedReason)
		}
		cur.Counter, cur.LastReportAt = counter, now
		cur.Posture = merge(cur.Posture, rd.Claims, rooted, now)
		if err := r.PutInstance(ctx, cur); err != nil {
			return err
		}
		entry.Action, entry.Target = "app_instance.report", cur.ID
		entry.Details = map[string]string{"device_id": cur.DeviceID}
		if entry.Outcome == "" {
			entry.Outcome = audit.OutcomeOK
		}
		if _, err := audit.Append(ctx, tx.Audit(), entry); err != nil {
			return err
		}
		out = cur
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.feed(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyTo puts what the instance established into a device posture: the attestation, and the
// app's claims where no more trustworthy source (MDM, attestation) holds the same fact.
func (p *Posture) ApplyTo(dst *policies.Posture) {
	weaker := func(c *policies.Claim[bool]) bool {
		return c == nil || c.Source == policies.ProvenanceAgent || c.Source == policies.ProvenanceApp
	}
	if p.Attested != nil {
		dst.AppAttested = clone(p.Attested)
	}
	if p.PasscodeSet != nil && weaker(dst.PasscodePresent) {
		dst.PasscodePresent = clone(p.PasscodeSet)
	}
	if p.Jailbroken != nil && (p.Jailbroken.Source == policies.ProvenanceAttested || weaker(dst.Jailbroken)) {
		dst.Jailbroken = clone(p.Jailbroken)
	}
	if p.ScreenCaptured != nil {
		dst.ScreenCaptured = clone(p.ScreenCaptured)
	}
}

func clone[T any](c *policies.Claim[T]) *policies.Claim[T] {
	out := *c
	return &out
}

// merge returns old with the report's claims: app claims replace app claims, and never an
// attested one (Google's root verdict outranks the app's heuristics until Google says again).
func merge(old *Posture, c api.AppClaims, rooted *bool, at time.Time) *Posture {
	p := Posture{}
	if old != nil {
		p = *old
	}
	setBool := func(dst **policies.Claim[bool], v *bool) {
		if v != nil && (*dst == nil || (*dst).Source != SourceAttested) {
			*dst = observe(*v, SourceApp, at)
		}
	}
	// Every report under a valid signature of the attested key renews the attestation's
	// freshness: the key is still the one Apple or Google vouched for.
	if p.Attested != nil {
		p.Attested = observe(p.Attested.Value, SourceAttested, at)
	}
	setBool(&p.PasscodeSet, c.PasscodeSet)
	setBool(&p.Jailbroken, c.Jailbroken)
	setBool(&p.ScreenCaptured, c.ScreenCaptured)
	if rooted != nil {
		p.Jailbroken = observe(*rooted, SourceAttested, at)
	}
	if c.AppVersion != "" && len(c.AppVersion) <= 64 {
		p.AppVersion = observe(c.AppVersion, SourceApp, at)
	}
	if c.OSVersion != "" && len(c.OSVersion) <= 64 {
		p.OSVersion = observe(c.OSVersion, SourceApp, at)
	}
	return &p
}

func instanceKey(in *Instance) (*ecdsa.PublicKey, error) { return parseStoredKey(in.PublicKey) }

func parseStoredKey(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("appinstances: stored key is not ECDSA")
	}
	return pub, nil
}

// usable returns instance id if it may act: known, not revoked, and its device neither wiped
// nor unenrolled. An instance found on an ended device is marked revoked on the spot, so the
// record says so from then on.
func (s *Service) usable(ctx context.Context, id string) (*Instance, error) {
	var in *Instance
	err := s.d.Store.View(ctx, func(tx Tx) error {
		var err error
		in, err = tx.AppInstances().Instance(ctx, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, refuse(ErrUnauthorized, "instance-unknown", "no app instance %s: register again", id)
	} else if err != nil {
		return nil, err
	}
	if in.Revoked() {
		return nil, refuse(ErrForbidden, "instance-revoked", "the app instance was revoked: %s", in.RevokedReason)
	}
	d, err := s.d.Devices.Get(ctx, in.DeviceID)
	if err != nil {
		return nil, err
	}
	if reason := RevokeReason(d); reason != "" {
		if err := s.revoke(ctx, in.DeviceID, reason); err != nil {
			return nil, err
		}
		return nil, refuse(ErrForbidden, "instance-revoked", "the app instance was revoked: %s", reason)
	}
	return in, nil
}

// RevokeDevice revokes every instance bound to deviceID, with reason; the security service
// calls it when a device is wiped or unenrolled.
func (s *Service) RevokeDevice(ctx context.Context, deviceID, reason string) error {
	return s.revoke(ctx, deviceID, reason)
}

func (s *Service) revoke(ctx context.Context, deviceID, reason string) error {
	now := s.d.Now().UTC()
	return s.d.Store.Update(ctx, func(tx Tx) error {
		r := tx.AppInstances()
		ins, err := r.DeviceInstances(ctx, deviceID)
		if err != nil {
			return err
		}
		for i := range ins {
			in := &ins[i]
			if in.Revoked() {
				continue
			}
			in.RevokedAt, in.RevokedReason = now, reason
			if err := r.PutInstance(ctx, in); err != nil {
				return err
			}
			e := audit.Entry{Actor: "system", Action: "app_instance.revoke", Target: in.ID, Outcome: audit.OutcomeOK,
				Details: map[string]string{"device_id": deviceID, "reason": reason}}
			if _, err := audit.Append(ctx, tx.Audit(), e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Instances returns the instances bound to deviceID.
func (s *Service) Instances(ctx context.Context, deviceID string) ([]Instance, error) {
	var out []Instance
	err := s.d.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.AppInstances().DeviceInstances(ctx, deviceID)
		return err
	})
	return out, err
}
