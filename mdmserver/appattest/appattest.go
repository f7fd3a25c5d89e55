// Package appattest verifies iOS App Attest attestations and assertions exactly as Apple's
// "Validating apps that connect to your server" describes, so that the server can trust that a
// request comes from the organisation's genuine messaging app on a genuine Apple device.
//
// It is pure: no storage, no HTTP. The caller keeps the one-time challenge, the attested public
// key and the last assertion counter, and passes them in; every refusal is an *Error carrying a
// reason code, and nothing is returned that the caller could store by mistake on a refusal.
package appattest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// appleRootPEM is Apple's App Attestation Root CA, from
// https://www.apple.com/certificateauthority/Apple_App_Attestation_Root_CA.pem
// (SHA-256 fingerprint 1CB9823BA28BA6AD2D33A006941DE2AE4F513EF1D4E831B9F7E0FA7B6242C932).
//
//go:embed Apple_App_Attestation_Root_CA.pem
var appleRootPEM []byte

// AppleRoot returns a pool holding only Apple's App Attestation Root CA, the production trust
// anchor for attestations.
func AppleRoot() *x509.CertPool {
	block, _ := pem.Decode(appleRootPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		panic("appattest: embedded Apple root does not parse: " + err.Error())
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// Environment is the App Attest environment an attestation comes from; it is fixed by the
// app's entitlement and shows in the AAGUID.
type Environment string

const (
	// Production attestations carry the AAGUID "appattest" followed by seven zero bytes.
	Production Environment = "production"
	// Development attestations carry the AAGUID "appattestdevelop".
	Development Environment = "development"
)

// aaguid returns the 16-byte AAGUID Apple puts in attestations of env.
func (e Environment) aaguid() []byte {
	if e == Development {
		return []byte("appattestdevelop")
	}
	return append([]byte("appattest"), make([]byte, 7)...)
}

// NonceOID is the credential certificate extension holding SHA-256(authData || clientDataHash).
var NonceOID = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 2}

// MaxAttestationSize bounds the attestation object read from a client; Apple's are about 5 KiB,
// most of it the receipt.
const MaxAttestationSize = 32 << 10

// MaxAssertionSize bounds an assertion object; Apple's are about 150 bytes.
const MaxAssertionSize = 2 << 10

// Reason codes of refusals. They are stable: the API reports them to clients and operators.
const (
	ReasonMalformed    = "attestation_malformed"
	ReasonFormat       = "attestation_format"
	ReasonChain        = "attestation_chain"
	ReasonNonce        = "attestation_nonce"
	ReasonKeyID        = "attestation_key_id"
	ReasonRPID         = "attestation_rp_id"
	ReasonCounter      = "attestation_counter"
	ReasonAAGUID       = "attestation_aaguid"
	ReasonCredentialID = "attestation_credential_id"
	ReasonPublicKey    = "attestation_public_key"

	ReasonAssertionMalformed = "assertion_malformed"
	ReasonAssertionRPID      = "assertion_rp_id"
	ReasonAssertionSignature = "assertion_signature"
	ReasonAssertionReplay    = "assertion_replay"
)

// Error is a refusal: Reason is one of the Reason codes, Detail says what was wrong.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return "appattest: " + e.Reason + ": " + e.Detail }

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

// Verifier checks attestations and assertions for one App ID.
type Verifier struct {
	appID    string
	rpIDHash [32]byte
	roots    *x509.CertPool
	env      Environment
	now      func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithRoots replaces Apple's App Attestation Root CA as trust anchor; tests use it with a
// generated root.
func WithRoots(pool *x509.CertPool) Option { return func(v *Verifier) { v.roots = pool } }

// WithEnvironment sets the environment whose AAGUID is accepted (Production by default).
func WithEnvironment(env Environment) Option { return func(v *Verifier) { v.env = env } }

// WithClock sets the time certificates are checked at; tests verify a real attestation at its
// own time with it.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// New returns a Verifier for the app whose App ID is teamID + "." + bundleID.
func New(teamID, bundleID string, opts ...Option) (*Verifier, error) {
	if teamID == "" || bundleID == "" {
		return nil, errors.New("appattest: team ID and bundle ID are both required")
	}
	v := &Verifier{appID: teamID + "." + bundleID, env: Production, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.env != Production && v.env != Development {
		return nil, fmt.Errorf("appattest: unknown environment %q (production or development)", v.env)
	}
	if v.roots == nil {
		v.roots = AppleRoot()
	}
	v.rpIDHash = sha256.Sum256([]byte(v.appID))
	return v, nil
}

// AppID returns the App ID (team ID and bundle ID) the verifier accepts.
func (v *Verifier) AppID() string { return v.appID }

// Attested is what a verified attestation establishes: the app instance's public key, its key
// identifier, Apple's receipt (for fraud-metric requests) and the environment.
type Attested struct {
	KeyID       []byte
	PublicKey   *ecdsa.PublicKey
	Receipt     []byte
	Environment Environment
	// CertificateNotAfter is when the credential certificate expires; Apple issues it for a
	// few days, which is why attestations are verified at registration and never later.
	CertificateNotAfter time.Time
}

// VerifyAttestation checks attestation (the bytes of DCAppAttestService.attestKey) made over
// SHA-256(challenge) for the key whose identifier is keyID (the raw 32 bytes, not base64).
// The steps are Apple's, in Apple's order.
func (v *Verifier) VerifyAttestation(attestation, challenge, keyID []byte) (*Attested, error) {
	if len(attestation) > MaxAttestationSize {
		return nil, refuse(ReasonMalformed, "attestation of %d bytes exceeds %d", len(attestation), MaxAttestationSize)
	}
	obj, err := decodeAttestation(attestation)
	if err != nil {
		return nil, err
	}
	if obj.Fmt != "apple-appattest" {
		return nil, refuse(ReasonFormat, "fmt is %q, want apple-appattest", obj.Fmt)
	}
	auth, err := parseAuthData(obj.AuthData, true)
	if err != nil {
		return nil, err
	}

	// 1. The x5c chain leads from the credential certificate to the App Attestation root.
	if len(obj.AttStmt.X5c) != 2 {
		return nil, refuse(ReasonChain, "x5c holds %d certificates, want credential and intermediate", len(obj.AttStmt.X5c))
	}
	cred, err := x509.ParseCertificate(obj.AttStmt.X5c[0])
	if err != nil {
		return nil, refuse(ReasonChain, "credential certificate: %v", err)
	}
	inter, err := x509.ParseCertificate(obj.AttStmt.X5c[1])
	if err != nil {
		return nil, refuse(ReasonChain, "intermediate certificate: %v", err)
	}
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	if _, err := cred.Verify(x509.VerifyOptions{
		Roots: v.roots, Intermediates: inters, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, refuse(ReasonChain, "credential certificate does not chain to the App Attestation root: %v", err)
	}

	// 2-4. nonce = SHA-256(authData || SHA-256(challenge)) equals the certificate's extension.
	clientDataHash := sha256.Sum256(challenge)
	nonce := sha256.Sum256(append(append([]byte{}, obj.AuthData...), clientDataHash[:]...))
	certNonce, err := nonceExtension(cred)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(certNonce, nonce[:]) {
		return nil, refuse(ReasonNonce, "certificate nonce does not match SHA-256(authData || SHA-256(challenge)): wrong or reused challenge")
	}

	// 5. The key identifier is the SHA-256 of the credential's public key (X9.62 uncompressed point).
	pub, ok := cred.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, refuse(ReasonPublicKey, "credential certificate key is not a P-256 ECDSA key")
	}
	point, err := pub.Bytes()
	if err != nil {
		return nil, refuse(ReasonPublicKey, "credential key: %v", err)
	}
	keyHash := sha256.Sum256(point)
	if !bytes.Equal(keyHash[:], keyID) {
		return nil, refuse(ReasonKeyID, "key identifier is not the SHA-256 of the attested public key")
	}

	// 6. The RP ID hash is SHA-256 of the App ID.
	if !bytes.Equal(auth.rpIDHash, v.rpIDHash[:]) {
		return nil, refuse(ReasonRPID, "RP ID hash is not SHA-256(%q): attestation is for another app", v.appID)
	}
	// 7. The counter of a fresh attestation is 0.
	if auth.counter != 0 {
		return nil, refuse(ReasonCounter, "attestation counter is %d, want 0", auth.counter)
	}
	// 8. The AAGUID names the configured environment.
	if !bytes.Equal(auth.aaguid, v.env.aaguid()) {
		return nil, refuse(ReasonAAGUID, "AAGUID %q is not the %s environment's", bytes.TrimRight(auth.aaguid, "\x00"), v.env)
	}
	// 9. The credential ID is the key identifier.
	if !bytes.Equal(auth.credentialID, keyID) {
		return nil, refuse(ReasonCredentialID, "credential ID is not the key identifier")
	}
	// Not one of Apple's steps, but the COSE key in authData must be the certified one: a
	// mismatch means the object was stitched together.
	if !auth.publicKey.Equal(pub) {
		return nil, refuse(ReasonPublicKey, "authenticator data key differs from the certified key")
	}
	return &Attested{
		KeyID:               append([]byte(nil), keyID...),
		PublicKey:           pub,
		Receipt:             append([]byte(nil), obj.AttStmt.Receipt...),
		Environment:         v.env,
		CertificateNotAfter: cred.NotAfter,
	}, nil
}

// nonceExtension extracts the octet string of the 1.2.840.113635.100.8.2 extension, a
// SEQUENCE holding one [1] EXPLICIT OCTET STRING.
func nonceExtension(cert *x509.Certificate) ([]byte, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(NonceOID) {
			continue
		}
		var seq struct {
			Nonce []byte `asn1:"tag:1,explicit"`
		}
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) != 0 || len(seq.Nonce) != sha256.Size {
			return nil, refuse(ReasonNonce, "nonce extension is malformed")
		}
		return seq.Nonce, nil
	}
	return nil, refuse(ReasonNonce, "credential certificate has no nonce extension")
}

// VerifyAssertion checks assertion (the bytes of DCAppAttestService.generateAssertion) made over
// SHA-256(clientData) with the key pub, whose last accepted counter is lastCounter. It returns
// the new counter, which the caller stores in the same transaction that accepts the request:
// a counter not above lastCounter is a replay or a cloned key.
func (v *Verifier) VerifyAssertion(assertion, clientData []byte, pub *ecdsa.PublicKey, lastCounter uint32) (uint32, error) {
	if len(assertion) > MaxAssertionSize {
		return 0, refuse(ReasonAssertionMalformed, "assertion of %d bytes exceeds %d", len(assertion), MaxAssertionSize)
	}
	obj, err := decodeAssertion(assertion)
	if err != nil {
		return 0, err
	}
	auth, err := parseAuthData(obj.AuthenticatorData, false)
	if err != nil {
		return 0, refuse(ReasonAssertionMalformed, "%v", err)
	}
	// 1-3. nonce = SHA-256(authenticatorData || SHA-256(clientData)); ES256 over it.
	clientDataHash := sha256.Sum256(clientData)
	nonce := sha256.Sum256(append(append([]byte{}, obj.AuthenticatorData...), clientDataHash[:]...))
	if pub == nil || !ecdsa.VerifyASN1(pub, nonce[:], obj.Signature) {
		return 0, refuse(ReasonAssertionSignature, "signature does not verify with the app instance's key")
	}
	// 4. The RP ID hash is the App ID's.
	if !bytes.Equal(auth.rpIDHash, v.rpIDHash[:]) {
		return 0, refuse(ReasonAssertionRPID, "RP ID hash is not SHA-256(%q)", v.appID)
	}
	// 5. The counter strictly increases.
	if auth.counter <= lastCounter {
		return 0, refuse(ReasonAssertionReplay, "counter %d is not above the last accepted %d: replayed or cloned", auth.counter, lastCounter)
	}
	return auth.counter, nil
}
