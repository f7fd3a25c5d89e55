// Package enroll issues and redeems Hale's enrollment tokens, renders and signs Apple enrollment
// profiles, and decodes the enrollment request bodies of the admin and agent APIs.
//
// An enrollment token is one-time, expiring and scoped to an owner, a group and a platform. Only
// its SHA-256 hash is stored: the token carries 256 random bits, so a fast hash is enough and the
// hash doubles as the lookup key. Apple devices redeem the token when they fetch their profile,
// which then carries a one-time SCEP challenge bound to the same enrollment.
//
// Enrollments and challenges are kept behind a [Repository] (storage/boltstore implements it);
// the rules (a token is redeemed once, a challenge is held, then spent or released, expiry and
// revocation win) are the functions of this package over it, so every backend shares them.
// [Service] runs each of them as one unit of work.
package enroll

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/text"
)

// Platform is how a device enrolls: through Apple MDM or through the mdmagent daemon.
type Platform string

// The platforms an enrollment can be scoped to.
const (
	PlatformApple Platform = "apple"
	PlatformAgent Platform = "agent"
	// PlatformAndroid enrolls through the Android Management API: the token rides in the AMAPI
	// enrollment token's additionalData and is redeemed when the phone first reports.
	PlatformAndroid Platform = "android"
)

// Valid reports whether p is a known platform.
func (p Platform) Valid() bool {
	return p == PlatformApple || p == PlatformAgent || p == PlatformAndroid
}

// State is the lifecycle state of an enrollment, derived from its timestamps.
type State string

// The enrollment states. A revoked enrollment stays revoked even if it was used or has expired:
// the admin's decision is the most useful thing to show.
const (
	StatePending State = "pending"
	StateUsed    State = "used"
	StateExpired State = "expired"
	StateRevoked State = "revoked"
)

// TTL bounds. A token that lives longer than a month is a standing credential, not an invitation.
const (
	DefaultTTL = 24 * time.Hour
	MinTTL     = time.Minute
	MaxTTL     = 30 * 24 * time.Hour
)

// DefaultChallengeTTL is how long a SCEP challenge stays valid after the profile was fetched.
const DefaultChallengeTTL = time.Hour

// maxText bounds owner, group, creator and device identifiers.
const maxText = 128

// Errors of Redeem and the challenge steps. The HTTP layer should answer all of them
// with the same status (and log which one) so that a guesser learns nothing about other tokens.
var (
	ErrUnknown       = errors.New("enroll: unknown enrollment token or challenge")
	ErrExpired       = errors.New("enroll: enrollment token or challenge expired; create a new enrollment")
	ErrRevoked       = errors.New("enroll: enrollment revoked")
	ErrUsed          = errors.New("enroll: enrollment token or challenge already used")
	ErrWrongPlatform = errors.New("enroll: enrollment token is for another platform")
	// ErrInUse is returned for a SCEP challenge another request holds while it is being issued
	// a certificate.
	ErrInUse = errors.New("enroll: challenge in use by another request; retry shortly")
	// ErrNotFound is returned by Get, Revoke, IssueChallenge and BindDevice for an unknown id.
	ErrNotFound = errors.New("enroll: no such enrollment")
	// ErrNotRedeemed is returned when a step needs a redeemed enrollment and it is still pending.
	ErrNotRedeemed = errors.New("enroll: enrollment has not been redeemed")
	// ErrAlreadyBound is returned by BindDevice when the enrollment belongs to another device.
	ErrAlreadyBound = errors.New("enroll: enrollment already bound to another device")
	// ErrInvalid wraps every validation error of a request; the HTTP layer answers 400.
	ErrInvalid = errors.New("enroll: invalid request")
	// ErrConflict is returned by Repository.Add for an enrollment ID already stored: two random
	// IDs collided, and creating again makes a new one.
	ErrConflict = errors.New("enroll: enrollment id collision; retry")
)

// Enrollment is an enrollment as the API shows it. It never holds the token.
type Enrollment struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Group     string    `json:"group"`
	Platform  Platform  `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	// DeviceID is the inventory device that used the enrollment; for Apple it is set by BindDevice
	// once the device checks in, since the profile fetch does not yet identify the device.
	DeviceID  string    `json:"device_id,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// BYOD marks an enrollment of a personal device: for Apple, account-driven User Enrollment
	// with the Managed Apple Account ManagedAppleID, whose "wipe" removes only the enrollment
	// and its managed data; for Android, a work profile.
	BYOD           bool   `json:"byod,omitempty"`
	ManagedAppleID string `json:"managed_apple_id,omitempty"`
	// Reusable marks a reusable enrollment credential (an agent installer's): up to MaxDevices
	// agents running OS enroll with it until it expires or is revoked, each with its own
	// identity. Uses counts them; UsedAt and DeviceID are then the last use.
	Reusable   bool   `json:"reusable,omitempty"`
	OS         string `json:"os,omitempty"`
	MaxDevices int    `json:"max_devices,omitempty"`
	Uses       int    `json:"uses,omitempty"`
	// State is computed when the record is read, never stored.
	State State `json:"state"`
}

// StateAt returns the state of e at now.
func (e *Enrollment) StateAt(now time.Time) State {
	switch {
	case !e.RevokedAt.IsZero():
		return StateRevoked
	case e.Reusable && e.Uses >= e.MaxDevices:
		return StateUsed
	case e.Reusable && !now.Before(e.ExpiresAt):
		return StateExpired
	case e.Reusable:
		return StatePending
	case !e.UsedAt.IsZero():
		return StateUsed
	case !now.Before(e.ExpiresAt):
		return StateExpired
	}
	return StatePending
}

// Token and challenge prefixes make a leaked secret recognisable (secret scanners, logs).
const (
	tokenPrefix     = "hale_enr_"
	challengePrefix = "hale_scep_"
	secretBytes     = 32
)

// Request describes an enrollment to create.
type Request struct {
	Owner     string
	Group     string
	Platform  Platform
	TTL       time.Duration // zero: DefaultTTL
	CreatedBy string
	// BYOD enrolls a personal device: an Apple device through account-driven User Enrollment
	// as the Managed Apple Account ManagedAppleID (user@domain, required with it), an Android
	// phone with a work profile. Agents enroll as they are.
	BYOD           bool
	ManagedAppleID string
	// Reusable makes a reusable credential for up to MaxDevices agents running OS (linux,
	// windows or macos); TTL may then reach MaxReusableTTL, and Owner defaults to Group.
	Reusable   bool
	OS         string
	MaxDevices int
}

// normalize trims and validates r, filling defaults. Errors wrap ErrInvalid.
func (r Request) normalize() (Request, error) {
	r.Owner, r.Group, r.CreatedBy = strings.TrimSpace(r.Owner), strings.TrimSpace(r.Group), strings.TrimSpace(r.CreatedBy)
	if r.Reusable && r.Owner == "" {
		r.Owner = r.Group
	}
	if err := checkText("owner", r.Owner, true); err != nil {
		return r, err
	}
	if err := checkText("group", r.Group, true); err != nil {
		return r, err
	}
	if err := checkText("created_by", r.CreatedBy, false); err != nil {
		return r, err
	}
	if !r.Platform.Valid() {
		return r, fmt.Errorf("%w: platform %q is not %q, %q or %q", ErrInvalid, r.Platform, PlatformApple, PlatformAgent, PlatformAndroid)
	}
	r.ManagedAppleID = strings.TrimSpace(r.ManagedAppleID)
	switch {
	case r.BYOD && r.Platform != PlatformApple && r.Platform != PlatformAndroid:
		return r, fmt.Errorf("%w: byod is for Apple devices (account-driven User Enrollment) and Android phones (a work profile); agents enroll as they are", ErrInvalid)
	case r.BYOD && r.Platform == PlatformApple && !validAccount(r.ManagedAppleID):
		return r, fmt.Errorf("%w: byod needs managed_apple_id, the Managed Apple Account the person signs in with (user@domain)", ErrInvalid)
	case r.ManagedAppleID != "" && (!r.BYOD || r.Platform != PlatformApple):
		return r, fmt.Errorf("%w: managed_apple_id is for Apple byod enrollments", ErrInvalid)
	}
	if err := r.checkReusable(); err != nil {
		return r, err
	}
	if r.TTL == 0 {
		r.TTL = DefaultTTL
	}
	maxTTL := MaxTTL
	if r.Reusable {
		maxTTL = MaxReusableTTL
	}
	if r.TTL < MinTTL || r.TTL > maxTTL {
		return r, fmt.Errorf("%w: ttl %s is outside %s to %s", ErrInvalid, r.TTL, MinTTL, maxTTL)
	}
	return r, nil
}

// checkText enforces the bounds every free-text identifier shares: valid UTF-8, printable, at most
// maxText bytes.
func checkText(field, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	case len(s) > maxText:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, field, maxText)
	case !text.Printable(s):
		return fmt.Errorf("%w: %s must be printable UTF-8 text", ErrInvalid, field)
	}
	return nil
}

// tokenHash checks the shape of a presented secret and returns its hash. Malformed secrets are
// rejected before touching the database.
func tokenHash(secret, prefix string) (string, bool) {
	hexPart, ok := strings.CutPrefix(secret, prefix)
	if !ok || len(hexPart) != 2*secretBytes {
		return "", false
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", false
	}
	return hashSecret(secret), true
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ProfileURL returns where an Apple device fetches its enrollment profile: baseURL (the server's
// external https URL) + "/enroll/apple/" + token. It contains the token: show it once, never log it.
func ProfileURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/enroll/apple/" + token
}

// The account-driven User Enrollment endpoints under the server's public URL.
const (
	// BYODPath is the enrollment URL the well-known document names (mdm-byod): the device's
	// enrollment request, answered 401 until it carries an access token.
	BYODPath = "/enroll/apple/byod"
	// SignInPath is the sign-in page the 401 challenge names (method apple-as-web).
	SignInPath = "/enroll/apple/byod/signin"
)

// BYODURL is the account-driven enrollment URL of a server at baseURL.
func BYODURL(baseURL string) string { return strings.TrimRight(baseURL, "/") + BYODPath }

// SignInURL is the account-driven sign-in page of a server at baseURL.
func SignInURL(baseURL string) string { return strings.TrimRight(baseURL, "/") + SignInPath }

// validAccount reports whether s is a user@domain account identifier Apple devices accept: one
// "@" splitting a non-empty user from a domain with a dot, printable ASCII, at most 256 bytes.
func validAccount(s string) bool {
	user, domain, ok := strings.Cut(s, "@")
	if !ok || user == "" || len(s) > 256 || strings.Contains(domain, "@") || !strings.Contains(domain, ".") ||
		strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}
