package posture

import (
	"encoding/json"
	"time"

	"github.com/halemdm/hale/remediation"
)

// Decision is the access API's answer for one device (GET /access/v1/devices/{id} and each
// element of a check): whether it may open a session, and why not.
type Decision struct {
	DeviceID          string    `json:"device_id"`
	Allow             bool      `json:"allow"`
	Reasons           []Reason  `json:"reasons"`
	Compliant         bool      `json:"compliant"`
	InGrace           bool      `json:"in_grace"`
	State             string    `json:"state,omitempty"`
	EvaluatedAt       time.Time `json:"evaluated_at,omitzero"`
	NoncompliantSince time.Time `json:"noncompliant_since,omitzero"`
	GraceUntil        time.Time `json:"grace_until,omitzero"`
	ReportedAt        time.Time `json:"reported_at,omitzero"`
	// Posture is the device's posture with the provenance of every claim, kept raw: its schema
	// belongs to the server's policies package and grows with it.
	Posture json.RawMessage `json:"posture,omitempty"`
	// BreakGlass is set when the device is allowed only by an emergency access use: until its
	// ExpiresAt, past the reasons it overrides (still listed in Reasons).
	BreakGlass *BreakGlass `json:"break_glass,omitempty"`
	// Remediation is what the device's user reads for each reason, in the language asked for
	// (the server's answer carries it when the request had Accept-Language; the Gate renders
	// it itself).
	Remediation []remediation.Item `json:"remediation,omitempty"`
}

// BreakGlass is an emergency access use (HIPAA 164.312(a)(2)(ii)) in force for a device: it is
// allowed although Reasons would deny it, until ExpiresAt, and every use is reviewed by the
// security team afterwards.
type BreakGlass struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	// Overrides are the reason codes the use lets through.
	Overrides []string `json:"overrides"`
}

// Reason is one stable code (and a human detail) for a deny, or for a grace warning.
type Reason struct {
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}

// Reason codes a backend may branch on. Policy rules add their own (passcode_missing,
// encryption_off, os_too_old, ...).
const (
	ReasonUnknownDevice  = "unknown_device"
	ReasonIndexNotLoaded = "index_not_loaded"
	// ReasonIndexStale: this server replica's copy of the decisions fell behind the shared
	// database (it lost the change feed); another replica, or this one once caught up, answers.
	ReasonIndexStale      = "index_stale"
	ReasonInternalError   = "internal_error"
	ReasonReportStale     = "report_stale"
	ReasonNoReport        = "no_report"
	ReasonGraceExpired    = "noncompliant_past_grace"
	ReasonLocked          = "device_locked"
	ReasonLost            = "device_lost"
	ReasonWiped           = "device_wiped"
	ReasonWipePending     = "wipe_pending"
	ReasonWipeIncomplete  = "wipe_incomplete" // the last wipe left managed data behind
	ReasonUnenrolled      = "device_unenrolled"
	ReasonRetired         = "device_retired"
	ReasonCertRevoked     = "certificate_revoked"
	ReasonInvalidDeviceID = "invalid_device_id"
	ReasonUnknownCert     = "unknown_certificate"
	ReasonInvalidSubject  = "invalid_subject"
	ReasonInvalidToken    = "invalid_token"
	ReasonTokenRevoked    = "token_revoked"
	ReasonUnreachable     = "server_unreachable"
	// ReasonNoDeviceIdentity: the request showed no posture token, device certificate or
	// (where trusted) device ID, so there is no device to decide about (SDK middleware only).
	ReasonNoDeviceIdentity = "no_device_identity"
)

// MaxCheckBatch is the most subjects one POST /access/v1/check may carry.
const MaxCheckBatch = 1000

// CheckRequest is the body of POST /access/v1/check: either one subject (the embedded
// Subject) or a batch of up to MaxCheckBatch in Devices, not both.
type CheckRequest struct {
	Subject
	Devices []Subject `json:"devices,omitempty"`
}

// Subject names a device in one of three ways; exactly one must be set.
type Subject struct {
	DeviceID string `json:"device_id,omitempty"`
	// Certificate is the device's certificate in PEM.
	Certificate string `json:"certificate,omitempty"`
	// CertificateSHA256 is the hex SHA-256 of the certificate's DER (colons allowed).
	CertificateSHA256 string `json:"certificate_sha256,omitempty"`
	// Token is a posture token the device presented.
	Token string `json:"token,omitempty"`
}

// CheckResponse answers a batch check: one decision per requested subject, in order.
type CheckResponse struct {
	Decisions []Decision `json:"decisions"`
}

// TokenType is the JWT "typ" header of posture tokens. Verifiers require it, so a token of
// another kind signed by the same keys (a Security Event Token) is never taken for one.
const TokenType = "posture+jwt"

// TokenAudience is the "aud" of posture tokens.
const TokenAudience = "hale-access"

// MaxTokenLifetime is the longest exp-iat a posture token may have. Verifiers refuse longer
// ones, because they remember a device's revocation only this long.
const MaxTokenLifetime = time.Hour

// TokenClaims are the claims of a posture token: a short-lived statement, signed by the
// server, that a device was allowed when it was issued, bound to the device's certificate.
type TokenClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"` // the device ID
	Audience  string   `json:"aud"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	Expiry    int64    `json:"exp"`
	ID        string   `json:"jti"`
	Confirm   Confirm  `json:"cnf"`
	Device    DeviceAt `json:"device"`
	// AppInstance is the messaging app instance a key-bound token (cnf.jkt) was issued to.
	AppInstance string `json:"app_instance,omitempty"`
	// LocalApp names the desktop app and local user a key-bound token was issued to through
	// the agent's local endpoint (a computer's messaging app, which cannot hold the device key).
	LocalApp *LocalApp `json:"local_app,omitempty"`
}

// LocalApp is a desktop app on a computer as the device's agent saw it asking for a token.
type LocalApp struct {
	User       string `json:"user"`
	UID        string `json:"uid,omitempty"`
	Executable string `json:"exe"`
}

// Confirm binds a token to a certificate (RFC 8705 section 3.1) or, for the messaging app, to
// the app instance's key (RFC 9449 section 6): one of the two.
type Confirm struct {
	// X5tS256 is the base64url (unpadded) SHA-256 of the certificate's DER.
	X5tS256 string `json:"x5t#S256,omitempty"`
	// JKT is the RFC 7638 thumbprint of the key DPoP proofs must be signed with.
	JKT string `json:"jkt,omitempty"`
}

// DeviceAt is the device's verdict and the posture facts a backend needs, when a token was
// issued.
type DeviceAt struct {
	Compliant  bool     `json:"compliant"`
	InGrace    bool     `json:"in_grace"`
	GraceUntil int64    `json:"grace_until,omitempty"` // Unix seconds
	Reasons    []string `json:"reasons,omitempty"`     // codes of grace warnings
	Platform   string   `json:"platform,omitempty"`
	OSVersion  string   `json:"os_version,omitempty"`
	// Encrypted and PasscodeSet are the posture claims HIPAA texting rests on; nil is unknown.
	Encrypted   *bool `json:"encrypted,omitempty"`
	PasscodeSet *bool `json:"passcode_set,omitempty"`
	// BreakGlass is set when the device was allowed only by an emergency access use; the token
	// expires no later than the use. Reasons then lists the codes it overrides.
	BreakGlass *BreakGlassAt `json:"break_glass,omitempty"`
}

// BreakGlassAt is the emergency access use a token was issued under.
type BreakGlassAt struct {
	ID        string `json:"id"`
	ExpiresAt int64  `json:"expires_at"` // Unix seconds
}

// SETType is the JWT "typ" header of Security Event Tokens (RFC 8417 section 2.3).
const SETType = "secevent+jwt"

// CAEP event types Hale emits.
const (
	EventComplianceChange = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	// EventVerification is the SSF stream verification event.
	EventVerification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
)

// SETClaims are the claims of a Security Event Token (RFC 8417, OpenID SSF 1.0).
type SETClaims struct {
	Issuer   string                     `json:"iss"`
	Audience string                     `json:"aud"`
	IssuedAt int64                      `json:"iat"`
	ID       string                     `json:"jti"`
	SubID    SubjectID                  `json:"sub_id"`
	Events   map[string]json.RawMessage `json:"events"`
	// TXN ties the SET to the change that caused it (a command ID or an audit entry).
	TXN string `json:"txn,omitempty"`
}

// SubjectID is an SSF subject identifier (RFC 9493). Hale names devices with the opaque format,
// and a messaging app instance on a device with the complex format: {"format":"complex",
// "device":{"format":"opaque","id":DEVICE_ID},"application":{"format":"opaque","id":INSTANCE_ID}}.
type SubjectID struct {
	Format string `json:"format"` // "opaque" or "complex"
	ID     string `json:"id,omitempty"`
	// Device and Application are the members of a complex subject.
	Device      *SubjectID `json:"device,omitempty"`
	Application *SubjectID `json:"application,omitempty"`
}

// DeviceID is the device a subject names: an opaque subject's ID, or a complex subject's
// opaque device member's; "" for any other.
func (s SubjectID) DeviceID() string {
	switch {
	case s.Format == "opaque":
		return s.ID
	case s.Format == "complex" && s.Device != nil && s.Device.Format == "opaque":
		return s.Device.ID
	}
	return ""
}

// AppInstance is the messaging app instance a complex subject names, or "".
func (s SubjectID) AppInstance() string {
	if s.Format == "complex" && s.Application != nil && s.Application.Format == "opaque" {
		return s.Application.ID
	}
	return ""
}

// CAEPEvent is the body of a device-compliance-change or session-revoked event.
type CAEPEvent struct {
	EventTimestamp   int64  `json:"event_timestamp"`
	InitiatingEntity string `json:"initiating_entity,omitempty"` // admin, policy, system
	// ReasonAdmin is a reason for administrators, keyed by language tag.
	ReasonAdmin map[string]string `json:"reason_admin,omitempty"`
	// PreviousStatus and CurrentStatus are "compliant" or "not-compliant"
	// (device-compliance-change only).
	PreviousStatus string `json:"previous_status,omitempty"`
	CurrentStatus  string `json:"current_status,omitempty"`
	// ReasonCode is Hale's stable reason code (an extension member CAEP allows).
	ReasonCode string `json:"reason_code,omitempty"`
	// GraceUntil is when the device will be denied unless it is fixed (Unix seconds): set on
	// the warnings EventReasonGraceStarted and EventReasonGraceEnding (an extension member).
	GraceUntil int64 `json:"grace_until,omitempty"`
	// BreakGlass is the emergency access use an EventReasonBreakGlassStarted or
	// EventReasonBreakGlassEnded event is about (an extension member).
	BreakGlass *BreakGlass `json:"break_glass,omitempty"`
}

// Reason codes of events that are notices, not revocations. A device-compliance-change with
// one of the first three keeps the device's tokens valid (its status stays not-compliant, but
// it is allowed); EventReasonBreakGlassEnded comes as a session-revoked.
const (
	// EventReasonGraceStarted: the device fell out of compliance and is allowed until
	// grace_until: tell its user what to fix.
	EventReasonGraceStarted = "grace_started"
	// EventReasonGraceEnding: grace_until is near (the policy's grace.warn_before).
	EventReasonGraceEnding = "grace_ending"
	// EventReasonBreakGlassStarted: an emergency access use lets the device through until
	// break_glass.expires_at.
	EventReasonBreakGlassStarted = "break_glass_started"
	// EventReasonBreakGlassEnded: the use expired or was revoked; sessions it opened end.
	EventReasonBreakGlassEnded = "break_glass_ended"
)

// notice reports whether a compliance change only informs: its tokens stay valid.
func notice(ev CAEPEvent) bool {
	switch ev.ReasonCode {
	case EventReasonGraceStarted, EventReasonGraceEnding, EventReasonBreakGlassStarted:
		return true
	}
	return false
}

// VerificationEvent is the body of an SSF verification event: the state the receiver sent
// when it asked for the event, echoed back.
type VerificationEvent struct {
	State string `json:"state,omitempty"`
}

// PollRequest is the body of an RFC 8936 poll.
type PollRequest struct {
	MaxEvents         *int              `json:"maxEvents,omitempty"`
	ReturnImmediately bool              `json:"returnImmediately,omitempty"`
	Ack               []string          `json:"ack,omitempty"`
	SETErrs           map[string]SETErr `json:"setErrs,omitempty"`
}

// SETErr is a receiver's reason for rejecting a SET (RFC 8935 section 2.3).
type SETErr struct {
	Err         string `json:"err"`
	Description string `json:"description,omitempty"`
}

// PollResponse answers an RFC 8936 poll: SETs keyed by jti.
type PollResponse struct {
	SETs          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}
