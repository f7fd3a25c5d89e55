package appinstances

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/appattest"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/playintegrity"
	"github.com/halemdm/hale/policies"
)

// Devices reads the device records instances bind to.
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
}

// Deps are what the service needs; IOS and Android may be nil when the organisation does not
// ship its app on that platform, and registrations from it are then refused.
type Deps struct {
	Store   Store
	Devices Devices
	IOS     *appattest.Verifier
	Android *playintegrity.Verifier
	Nonces  *Nonces
	// Posture takes what an instance established into its device's posture; nil in tests of
	// this package alone.
	Posture PostureSink
	Now     func() time.Time
	Log     *slog.Logger
}

// PostureSink is the compliance engine, as this package feeds it.
type PostureSink interface {
	IngestAppReport(ctx context.Context, deviceID string, update func(*policies.Posture)) (policies.Verdict, error)
}

// Service registers app instances, takes their reports and revokes them.
type Service struct{ d Deps }

// New returns the service on d.
func New(d Deps) (*Service, error) {
	if d.Store == nil || d.Devices == nil || d.Nonces == nil {
		return nil, errors.New("appinstances: store, devices and nonces are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{d: d}, nil
}

// Refusal is a request refused for a reason the client or IT can act on; Code is stable.
type Refusal struct {
	Code   string
	Detail string
	// Kind groups refusals by how the API answers: ErrInvalid 400, ErrUnauthorized 401,
	// ErrForbidden 403, ErrConflict 409, ErrUnavailable 501.
	Kind error
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Detail }

// Unwrap returns the refusal's kind.
func (r *Refusal) Unwrap() error { return r.Kind }

// Kinds of refusal.
var (
	ErrInvalid      = errors.New("appinstances: invalid request")
	ErrUnauthorized = errors.New("appinstances: proof refused")
	ErrForbidden    = errors.New("appinstances: revoked")
	ErrConflict     = errors.New("appinstances: conflict")
	ErrUnavailable  = errors.New("appinstances: platform not configured")
)

func refuse(kind error, code, format string, args ...any) error {
	return &Refusal{Code: code, Detail: fmt.Sprintf(format, args...), Kind: kind}
}

// Nonce issues a one-time server nonce.
func (s *Service) Nonce() (string, time.Time) { return s.d.Nonces.Issue() }

// hashToken is how binding tokens are stored: a leaked database yields no usable token.
func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// MaxBindingTTL bounds how long a binding token may be used.
const MaxBindingTTL = 30 * 24 * time.Hour

// IssueBinding makes a one-time binding token for device d, valid for ttl, audited as entry
// (whose Action and Target it fills).
func (s *Service) IssueBinding(ctx context.Context, d *inventory.Device, ttl time.Duration, entry audit.Entry) (string, time.Time, error) {
	if ttl <= 0 || ttl > MaxBindingTTL {
		return "", time.Time{}, refuse(ErrInvalid, "invalid-ttl", "ttl must be positive and at most %s", MaxBindingTTL)
	}
	if ended(d) {
		return "", time.Time{}, refuse(ErrConflict, "device-ended", "device %s is %s: it cannot bind app instances", d.ID, d.State)
	}
	token := "hab_" + randid.Hex(24)
	now := s.d.Now().UTC()
	b := &Binding{Hash: hashToken(token), DeviceID: d.ID, CreatedAt: now, ExpiresAt: now.Add(ttl), CreatedBy: entry.Actor}
	entry.Action, entry.Target = "app_binding.create", d.ID
	entry.Details = map[string]string{"expires_at": b.ExpiresAt.Format(time.RFC3339)}
	if entry.Outcome == "" {
		entry.Outcome = audit.OutcomeOK
	}
	err := s.d.Store.Update(ctx, func(tx Tx) error {
		if err := tx.AppInstances().PutBinding(ctx, b); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx.Audit(), entry)
		return err
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return token, b.ExpiresAt, nil
}

// CanDeliver says whether a binding token can reach the app on d as its managed app
// configuration: d must be an Apple device enrolled with MDM, and not ended.
func (s *Service) CanDeliver(d *inventory.Device) error {
	switch {
	case s.d.IOS == nil:
		return refuse(ErrUnavailable, "platform-not-configured", "the iOS app is not configured (app_ios_bundle_id): nothing to configure")
	case d.Platform != inventory.PlatformApple || d.EnrollmentID == "":
		return refuse(ErrConflict, "not-deliverable", "device %s is not enrolled with Apple MDM: give the token to the app another way", d.ID)
	case ended(d):
		return refuse(ErrConflict, "device-ended", "device %s is %s", d.ID, d.State)
	}
	return nil
}

// RevokeReason says why d's state revokes its app instances, or "" when it does not.
func RevokeReason(d *inventory.Device) string {
	switch {
	case d.Wipe != nil:
		return "device wipe ordered"
	case ended(d):
		return "device " + string(d.State)
	}
	return ""
}

// ended reports whether d's management is over or a wipe was ordered, either of which revokes
// its app instances: the app must not keep a session on a phone being wiped.
func ended(d *inventory.Device) bool {
	if d.Wipe != nil {
		return true
	}
	switch d.State {
	case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
		return true
	}
	return false
}

// proof is what a verified attestation yields, whatever the platform.
type proof struct {
	keyID       string
	pub         *ecdsa.PublicKey
	proofKey    []byte // PKIX DER of the key tokens are bound to
	environment string
	receipt     []byte
	rooted      *bool // Play Integrity's device verdict; nil on iOS
}

// Register verifies req's attestation and binding token and stores the new instance with its
// audit entry. Every refusal stores nothing: the nonce is spent either way, so a refused
// attestation cannot be retried with the same one.
func (s *Service) Register(ctx context.Context, req api.AppRegisterRequest, entry audit.Entry) (*Instance, error) {
	if req.Nonce == "" || req.BindingToken == "" {
		return nil, refuse(ErrInvalid, "invalid-request", "nonce and binding_token are required")
	}
	if !s.d.Nonces.Use(req.Nonce) {
		return nil, refuse(ErrUnauthorized, "nonce-invalid", "the nonce is unknown, used or expired: ask POST /app/v1/nonce for a new one")
	}
	var pr *proof
	var err error
	switch Platform(req.Platform) {
	case IOS:
		pr, err = s.verifyIOS(req)
	case Android:
		pr, err = s.verifyAndroid(req)
	default:
		return nil, refuse(ErrInvalid, "invalid-platform", "platform must be ios or android")
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pr.pub)
	if err != nil {
		return nil, err
	}
	now := s.d.Now().UTC()
	in := &Instance{
		ID: "ai_" + randid.Hex(12), Platform: Platform(req.Platform), KeyID: pr.keyID, PublicKey: der, ProofKey: pr.proofKey,
		Environment: pr.environment, Receipt: pr.receipt, RegisteredAt: now,
		Posture: &Posture{Attested: observe(true, SourceAttested, now)},
	}
	if pr.rooted != nil {
		in.Posture.Jailbroken = observe(*pr.rooted, SourceAttested, now)
	}
	hash := hashToken(req.BindingToken)
	err = s.d.Store.Update(ctx, func(tx Tx) error {
		r := tx.AppInstances()
		b, err := r.Binding(ctx, hash)
		if errors.Is(err, ErrNotFound) {
			return refuse(ErrUnauthorized, "binding-invalid", "the binding token is unknown: ask IT for one")
		} else if err != nil {
			return err
		}
		if b.UsedBy != "" {
			return refuse(ErrUnauthorized, "binding-used", "the binding token was already used: ask IT for a new one")
		}
		if !now.Before(b.ExpiresAt) {
			return refuse(ErrUnauthorized, "binding-expired", "the binding token expired at %s: ask IT for a new one", b.ExpiresAt.Format(time.RFC3339))
		}
		d, err := s.d.Devices.Get(ctx, b.DeviceID)
		if err != nil {
			return fmt.Errorf("appinstances: device %s of binding: %w", b.DeviceID, err)
		}
		if ended(d) {
			return refuse(ErrForbidden, "device-ended", "the device this token binds to is %s", d.State)
		}
		if _, err := r.InstanceByKey(ctx, in.KeyID); err == nil {
			return refuse(ErrConflict, "key-registered", "this app key is already registered: generate a new key")
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		in.DeviceID = b.DeviceID
		b.UsedBy, b.UsedAt = in.ID, now
		if err := r.PutBinding(ctx, b); err != nil {
			return err
		}
		if err := r.PutInstance(ctx, in); err != nil {
			return err
		}
		entry.Action, entry.Target = "app_instance.register", in.ID
		entry.Details = map[string]string{"device_id": in.DeviceID, "platform": string(in.Platform), "key_id": in.KeyID}
		if entry.Outcome == "" {
			entry.Outcome = audit.OutcomeOK
		}
		_, err = audit.Append(ctx, tx.Audit(), entry)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.feed(ctx, in); err != nil {
		return nil, err
	}
	return in, nil
}

// feed takes what in established into its device's posture, once it is committed: a failure
// is an error for the app to retry, never a claim the device did not earn.
func (s *Service) feed(ctx context.Context, in *Instance) error {
	if s.d.Posture == nil || in.Posture == nil {
		return nil
	}
	if _, err := s.d.Posture.IngestAppReport(ctx, in.DeviceID, in.Posture.ApplyTo); err != nil {
		return fmt.Errorf("appinstances: device %s posture: %w", in.DeviceID, err)
	}
	return nil
}

func decodeB64(field, v string, max int) ([]byte, error) {
	if len(v) > max*4/3+4 {
		return nil, refuse(ErrInvalid, "invalid-request", "%s is too large", field)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	return nil, refuse(ErrInvalid, "invalid-request", "%s is not base64", field)
}

func (s *Service) verifyIOS(req api.AppRegisterRequest) (*proof, error) {
	if s.d.IOS == nil {
		return nil, refuse(ErrUnavailable, "platform-not-configured", "this server does not accept iOS app instances (app.ios is not configured)")
	}
	keyID, err := decodeB64("key_id", req.KeyID, 64)
	if err != nil {
		return nil, err
	}
	att, err := decodeB64("attestation", req.Attestation, appattest.MaxAttestationSize)
	if err != nil {
		return nil, err
	}
	// The proof key (a Secure Enclave key the app made) is bound by the attestation itself:
	// its challenge is the request hash of the nonce and that key.
	der, err := decodeB64("public_key", req.PublicKey, 512)
	if err != nil {
		return nil, err
	}
	if _, err := parseAppKey(der); err != nil {
		return nil, err
	}
	got, err := s.d.IOS.VerifyAttestation(att, []byte(api.AppRequestHash(req.Nonce, der)), keyID)
	if err != nil {
		return nil, refuse(ErrUnauthorized, appattest.ReasonOf(err), "%v", err)
	}
	return &proof{
		keyID: base64.StdEncoding.EncodeToString(got.KeyID), pub: got.PublicKey, proofKey: der,
		environment: string(got.Environment), receipt: got.Receipt,
	}, nil
}

func (s *Service) verifyAndroid(req api.AppRegisterRequest) (*proof, error) {
	if s.d.Android == nil {
		return nil, refuse(ErrUnavailable, "platform-not-configured", "this server does not accept Android app instances (app.android is not configured)")
	}
	der, err := decodeB64("public_key", req.PublicKey, 512)
	if err != nil {
		return nil, err
	}
	pub, err := parseAppKey(der)
	if err != nil {
		return nil, err
	}
	v, err := s.d.Android.Verify(req.IntegrityToken, api.AppRequestHash(req.Nonce, der))
	if err != nil {
		return nil, refuse(ErrUnauthorized, playintegrity.ReasonOf(err), "%v", err)
	}
	jwk := jose.JSONWebKey{Key: pub}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	rooted := v.Rooted
	return &proof{keyID: base64.RawURLEncoding.EncodeToString(thumb), pub: pub, proofKey: der, environment: "play", rooted: &rooted}, nil
}

// parseAppKey accepts only an ECDSA P-256 key: what Android Keystore and the Secure Enclave make,
// and what ES256 verifies.
func parseAppKey(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, refuse(ErrInvalid, "invalid-public-key", "public_key is not PKIX DER: %v", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, refuse(ErrInvalid, "invalid-public-key", "public_key must be an ECDSA P-256 key")
	}
	return pub, nil
}
