// Package playintegrity verifies Google Play Integrity tokens locally with the organisation's
// own response keys ("Manage response encryption" in the Play Console): the token is a JWE
// (A256KW, A256GCM) around a JWS (ES256) around the verdict JSON. It checks the package name,
// the signing certificate digest, the request binding, freshness and the app recognition
// verdict, and maps the device recognition verdict to whether the device is rooted.
//
// It is pure: no storage, no HTTP. Every refusal is an *Error with a reason code.
package playintegrity

import (
	"crypto/ecdsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// MaxTokenSize bounds the token read from a client; Google's are under 4 KiB.
const MaxTokenSize = 16 << 10

// Reason codes of refusals.
const (
	ReasonMalformed     = "integrity_malformed"
	ReasonDecrypt       = "integrity_decrypt"
	ReasonSignature     = "integrity_signature"
	ReasonPackage       = "integrity_package"
	ReasonCertificate   = "integrity_certificate"
	ReasonBinding       = "integrity_binding"
	ReasonStale         = "integrity_stale"
	ReasonUnrecognized  = "integrity_app_unrecognized"
	ReasonNoDeviceClaim = "integrity_device_verdict_missing"
)

// Error is a refusal: Reason is one of the Reason codes, Detail says what was wrong.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return "playintegrity: " + e.Reason + ": " + e.Detail }

func refuse(reason, format string, args ...any) error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason code of err, or "" when err is not a refusal.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Verdict values Google documents.
const (
	AppPlayRecognized      = "PLAY_RECOGNIZED"
	DeviceIntegrity        = "MEETS_DEVICE_INTEGRITY"
	DeviceStrongIntegrity  = "MEETS_STRONG_INTEGRITY"
	DeviceBasicIntegrity   = "MEETS_BASIC_INTEGRITY"
	DeviceVirtualIntegrity = "MEETS_VIRTUAL_INTEGRITY"
)

// Payload is the verdict JSON inside the token, as Google documents it (fields Hale reads).
type Payload struct {
	RequestDetails struct {
		RequestPackageName string `json:"requestPackageName"`
		// TimestampMillis is a decimal string, as Google sends it.
		TimestampMillis string `json:"timestampMillis"`
		Nonce           string `json:"nonce,omitempty"`
		RequestHash     string `json:"requestHash,omitempty"`
	} `json:"requestDetails"`
	AppIntegrity struct {
		AppRecognitionVerdict   string   `json:"appRecognitionVerdict"`
		PackageName             string   `json:"packageName,omitempty"`
		CertificateSha256Digest []string `json:"certificateSha256Digest,omitempty"`
		VersionCode             string   `json:"versionCode,omitempty"`
	} `json:"appIntegrity"`
	// DeviceIntegrity is absent when the app did not ask for the device verdict, and an empty
	// object when the device meets no integrity level at all.
	DeviceIntegrity *DeviceIntegrityVerdict `json:"deviceIntegrity,omitempty"`
	AccountDetails  struct {
		AppLicensingVerdict string `json:"appLicensingVerdict,omitempty"`
	} `json:"accountDetails"`
}

// DeviceIntegrityVerdict is the payload's deviceIntegrity object.
type DeviceIntegrityVerdict struct {
	DeviceRecognitionVerdict []string `json:"deviceRecognitionVerdict,omitempty"`
}

// Verdict is what a verified token establishes.
type Verdict struct {
	PackageName string
	VersionCode string
	IssuedAt    time.Time
	// DeviceRecognition is Google's list as sent.
	DeviceRecognition []string
	// Rooted is true unless Google says MEETS_DEVICE_INTEGRITY or MEETS_STRONG_INTEGRITY: a
	// device that only meets basic integrity may be rooted or run an unlocked bootloader.
	Rooted bool
	// Strong is MEETS_STRONG_INTEGRITY: hardware-backed proof of boot integrity.
	Strong bool
}

// Verifier checks tokens for one app.
type Verifier struct {
	pkg         string
	decryption  []byte
	verify      *ecdsa.PublicKey
	certDigests []string
	maxAge      time.Duration
	now         func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithCertificateDigests lists the accepted app signing certificate digests (SHA-256,
// base64url without padding as Google sends them, or hex); without it any is accepted.
func WithCertificateDigests(digests ...string) Option {
	return func(v *Verifier) {
		for _, d := range digests {
			v.certDigests = append(v.certDigests, normaliseDigest(d))
		}
	}
}

// WithMaxAge sets how old a token may be (default 5 minutes).
func WithMaxAge(d time.Duration) Option { return func(v *Verifier) { v.maxAge = d } }

// WithClock sets the clock freshness is checked against.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// New returns a Verifier for packageName with the Play Console's response keys: decryptionKey
// is the base64 AES-256 key, verificationKey the base64 DER (SubjectPublicKeyInfo) EC key.
func New(packageName, decryptionKey, verificationKey string, opts ...Option) (*Verifier, error) {
	if packageName == "" {
		return nil, errors.New("playintegrity: package name is required")
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(decryptionKey))
	if err != nil || len(dec) != 32 {
		return nil, errors.New("playintegrity: decryption key must be the Play Console's base64 AES-256 key")
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(verificationKey))
	if err != nil {
		return nil, fmt.Errorf("playintegrity: verification key is not base64: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("playintegrity: verification key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("playintegrity: verification key is not an EC key")
	}
	v := &Verifier{pkg: packageName, decryption: dec, verify: ec, maxAge: 5 * time.Minute, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// Verify decrypts and checks token; binding is what the app was told to bind the request to
// (the server nonce), matched against requestHash (standard API) or nonce (classic API).
func (v *Verifier) Verify(token, binding string) (*Verdict, error) {
	if len(token) > MaxTokenSize {
		return nil, refuse(ReasonMalformed, "token of %d bytes exceeds %d", len(token), MaxTokenSize)
	}
	jwe, err := jose.ParseEncryptedCompact(token, []jose.KeyAlgorithm{jose.A256KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, refuse(ReasonMalformed, "not an A256KW/A256GCM JWE: %v", err)
	}
	inner, err := jwe.Decrypt(v.decryption)
	if err != nil {
		return nil, refuse(ReasonDecrypt, "JWE does not decrypt with the organisation's key: tampered or for another app")
	}
	jws, err := jose.ParseSignedCompact(string(inner), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, refuse(ReasonMalformed, "decrypted content is not an ES256 JWS: %v", err)
	}
	body, err := jws.Verify(v.verify)
	if err != nil {
		return nil, refuse(ReasonSignature, "JWS signature does not verify with the organisation's verification key")
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, refuse(ReasonMalformed, "verdict is not JSON: %v", err)
	}
	return v.check(&p, binding)
}

func (v *Verifier) check(p *Payload, binding string) (*Verdict, error) {
	rd, app := p.RequestDetails, p.AppIntegrity
	if rd.RequestPackageName != v.pkg {
		return nil, refuse(ReasonPackage, "requested by package %q, want %q", rd.RequestPackageName, v.pkg)
	}
	got := rd.RequestHash
	if got == "" {
		got = rd.Nonce
	}
	if binding == "" || subtle.ConstantTimeCompare([]byte(got), []byte(binding)) != 1 {
		return nil, refuse(ReasonBinding, "request hash or nonce is not the server's challenge: wrong or reused")
	}
	ms, err := strconv.ParseInt(rd.TimestampMillis, 10, 64)
	if err != nil {
		return nil, refuse(ReasonMalformed, "timestampMillis %q is not a number", rd.TimestampMillis)
	}
	issued := time.UnixMilli(ms)
	now := v.now()
	if now.Sub(issued) > v.maxAge || issued.Sub(now) > time.Minute {
		return nil, refuse(ReasonStale, "verdict issued %s, outside %s of now", issued.UTC().Format(time.RFC3339), v.maxAge)
	}
	if app.AppRecognitionVerdict != AppPlayRecognized {
		return nil, refuse(ReasonUnrecognized, "app recognition verdict is %q, want PLAY_RECOGNIZED", app.AppRecognitionVerdict)
	}
	if app.PackageName != v.pkg {
		return nil, refuse(ReasonPackage, "app integrity names package %q, want %q", app.PackageName, v.pkg)
	}
	if len(v.certDigests) > 0 && !slices.ContainsFunc(app.CertificateSha256Digest, func(d string) bool {
		return slices.Contains(v.certDigests, normaliseDigest(d))
	}) {
		return nil, refuse(ReasonCertificate, "app is not signed with a configured certificate")
	}
	if p.DeviceIntegrity == nil {
		// Without the object the verdict was not asked for, which proves nothing either way.
		return nil, refuse(ReasonNoDeviceClaim, "token carries no device integrity verdict")
	}
	// An empty list is Google's way of saying the device meets no integrity level: rooted.
	dev := p.DeviceIntegrity.DeviceRecognitionVerdict
	meets := slices.Contains(dev, DeviceIntegrity) || slices.Contains(dev, DeviceStrongIntegrity)
	return &Verdict{
		PackageName: app.PackageName, VersionCode: app.VersionCode, IssuedAt: issued,
		DeviceRecognition: slices.Clone(dev), Rooted: !meets, Strong: slices.Contains(dev, DeviceStrongIntegrity),
	}, nil
}

// normaliseDigest turns a base64url, base64 or hex SHA-256 digest into lower-case hex.
func normaliseDigest(d string) string {
	d = strings.TrimSpace(d)
	if len(d) == 64 {
		return strings.ToLower(d)
	}
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(d); err == nil && len(b) == 32 {
			return fmt.Sprintf("%x", b)
		}
	}
	return d
}
