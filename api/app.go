package api

import (
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// AppNonceAnswer is the answer to POST /app/v1/nonce: a one-time server nonce for one
// registration or one report, and when it expires.
type AppNonceAnswer struct {
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AppRegisterRequest is the body of POST /app/v1/register.
//
// On iOS, KeyID is DCAppAttestService.generateKey's identifier (base64), PublicKey a Secure
// Enclave key the app made for proofs of possession (base64 PKIX DER, ECDSA P-256: App Attest
// keys sign only assertions), and Attestation attestKey's object (base64) made with
// clientDataHash = SHA-256(AppRequestHash(Nonce, PublicKey DER)), which binds that key.
//
// On Android, PublicKey is the app's Android Keystore key (base64 PKIX DER, ECDSA P-256) and
// IntegrityToken is a Play Integrity token whose request hash (standard API) or nonce (classic)
// is AppRequestHash(Nonce, PublicKey).
type AppRegisterRequest struct {
	Platform string `json:"platform"` // ios or android
	// BindingToken is the one-time token IT issued for the device (managed app configuration
	// on a managed iPhone, mdmctl otherwise).
	BindingToken string `json:"binding_token"`
	Nonce        string `json:"nonce"`

	KeyID       string `json:"key_id,omitempty"`
	Attestation string `json:"attestation,omitempty"`

	PublicKey      string `json:"public_key,omitempty"`
	IntegrityToken string `json:"integrity_token,omitempty"`
}

// AppRegisterAnswer is the answer to POST /app/v1/register.
type AppRegisterAnswer struct {
	InstanceID string `json:"instance_id"`
	DeviceID   string `json:"device_id"`
	Platform   string `json:"platform"`
}

// AppClaims are what the messaging app observes that MDM cannot. Absent means not observed.
type AppClaims struct {
	// PasscodeSet: iOS LAContext.canEvaluatePolicy(.deviceOwnerAuthentication), Android
	// KeyguardManager.isDeviceSecure.
	PasscodeSet *bool `json:"passcode_set,omitempty"`
	// Jailbroken is the app's jailbreak or root heuristics' result.
	Jailbroken *bool `json:"jailbroken,omitempty"`
	// ScreenCaptured: iOS UIScreen.isCaptured; on Android whether FLAG_SECURE is off.
	ScreenCaptured *bool  `json:"screen_captured,omitempty"`
	AppVersion     string `json:"app_version,omitempty"`
	OSVersion      string `json:"os_version,omitempty"`
}

// AppReportData is what an app signs for POST /app/v1/report: the nonce it was given, and its
// claims. The app sends its exact JSON bytes (base64) as ClientData, so the server verifies the
// signature over the bytes the app signed, never over a re-encoding.
type AppReportData struct {
	Nonce  string    `json:"nonce"`
	Claims AppClaims `json:"claims"`
}

// AppReportRequest is the body of POST /app/v1/report. ClientData is the base64 JSON of an
// AppReportData. On iOS Assertion is an App Attest assertion (base64) over SHA-256(ClientData
// bytes); on Android it is an ES256 signature (ASN.1 DER, base64) over the same bytes with the
// registered key. IntegrityToken, optional on Android, is a fresh Play Integrity token whose
// request hash is AppRequestHash(Nonce, ClientData bytes), renewing the attested root verdict.
type AppReportRequest struct {
	InstanceID     string `json:"instance_id"`
	ClientData     string `json:"client_data"`
	Assertion      string `json:"assertion"`
	IntegrityToken string `json:"integrity_token,omitempty"`
}

// AppClaim is one claim as the server keeps it: its value, provenance ("app" for what the app
// reported under a valid signature, "attested" for what Apple or Google signed) and time.
type AppClaim struct {
	Value      any       `json:"value"`
	Source     string    `json:"source"`
	ObservedAt time.Time `json:"observed_at"`
}

// AppReportAnswer is the answer to POST /app/v1/report: the instance's claims as recorded.
type AppReportAnswer struct {
	InstanceID string              `json:"instance_id"`
	DeviceID   string              `json:"device_id"`
	Claims     map[string]AppClaim `json:"claims"`
}

// AppBindingRequest is the body of POST /api/v1/devices/{id}/app-bindings.
type AppBindingRequest struct {
	// TTL is how long the token may be used, such as "72h" (default 24h, at most 30 days).
	TTL string `json:"ttl,omitempty"`
	// Deliver sends the token to the messaging app on a managed iPhone or iPad as its managed
	// app configuration (the Settings command's ApplicationConfiguration for the app's bundle
	// ID), with the server's URL: the keys AppConfigServerURL and AppConfigBindingToken.
	Deliver bool `json:"deliver,omitempty"`
}

// The keys of the messaging app's managed app configuration, as the app reads them from
// UserDefaults under com.apple.configuration.managed.
const (
	AppConfigServerURL    = "HaleServerURL"
	AppConfigBindingToken = "HaleBindingToken"
)

// AppBindingAnswer is the answer to POST /api/v1/devices/{id}/app-bindings: the one-time token
// (shown once) the app registers with.
type AppBindingAnswer struct {
	Token     string    `json:"token"`
	DeviceID  string    `json:"device_id"`
	ExpiresAt time.Time `json:"expires_at"`
	// CommandID is the Settings command that delivers the token, when it was asked for.
	CommandID string `json:"command_id,omitempty"`
}

// AppInstance is one app instance as GET /api/v1/devices/{id}/app-instances lists it.
type AppInstance struct {
	ID            string              `json:"id"`
	Platform      string              `json:"platform"`
	DeviceID      string              `json:"device_id"`
	KeyID         string              `json:"key_id"`
	Environment   string              `json:"environment,omitempty"`
	RegisteredAt  time.Time           `json:"registered_at"`
	LastReportAt  *time.Time          `json:"last_report_at,omitempty"`
	Claims        map[string]AppClaim `json:"claims,omitempty"`
	RevokedAt     *time.Time          `json:"revoked_at,omitempty"`
	RevokedReason string              `json:"revoked_reason,omitempty"`
}

// AppInstances is the answer to GET /api/v1/devices/{id}/app-instances.
type AppInstances struct {
	Instances []AppInstance `json:"instances"`
}

// AppRequestHash binds a nonce to data: base64url (no padding) of SHA-256(nonce || data). At
// registration data is the app's proof key (PKIX DER): an Android app asks Play Integrity to
// bind this request hash, an iOS app attests with it as the challenge. On a report data is the
// client data bytes (an Android report's fresh Play Integrity verdict). A verdict or an
// attestation is then useless for any other key or report.
func AppRequestHash(nonce string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(nonce))
	h.Write(data)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
