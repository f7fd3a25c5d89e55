package api

import "time"

// EnrollmentRequest is the body of POST /api/v1/enrollments.
type EnrollmentRequest struct {
	// Owner is required, except for a reusable credential (it defaults to Group).
	Owner string `json:"owner,omitempty"`
	Group string `json:"group"`
	// Platform is apple (an enrollment profile), agent (mdmagent enroll) or android (an Android
	// Management API enrollment token).
	Platform string `json:"platform"`
	// TTL is how long the token is valid: a Go duration ("24h") or whole days ("7d"); empty
	// means the server's default.
	TTL string `json:"ttl,omitempty"`
	// BYOD enrolls a personal device: an Android phone with a work profile, or an Apple device
	// through account-driven User Enrollment as the Managed Apple Account ManagedAppleID
	// (required there): the person signs in to that account on the device and gives the
	// one-time token as the enrollment code.
	BYOD           bool   `json:"byod,omitempty"`
	ManagedAppleID string `json:"managed_apple_id,omitempty"`
	// Reusable makes a reusable enrollment credential for agent installers (platform agent):
	// up to MaxDevices devices running OS (linux, windows or macos) enroll with it, each with
	// its own identity, until it expires (TTL up to 365d) or is revoked. Owner defaults to
	// Group.
	Reusable   bool   `json:"reusable,omitempty"`
	OS         string `json:"os,omitempty"`
	MaxDevices int    `json:"max_devices,omitempty"`
}

// Enrollment is a one-time enrollment as the admin API shows it: an entry of GET
// /api/v1/enrollments and the answer to DELETE /api/v1/enrollments/{id}. Its token is never
// shown again after its creation.
type Enrollment struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Group     string    `json:"group"`
	Platform  string    `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	// DeviceID is the device that used the enrollment (for Apple, the one its profile was made
	// for).
	DeviceID  string    `json:"device_id,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// State is pending, used, expired or revoked.
	State string `json:"state"`
	// BYOD: a personal device (Apple: account-driven User Enrollment as ManagedAppleID; Android: a work profile).
	BYOD           bool   `json:"byod,omitempty"`
	ManagedAppleID string `json:"managed_apple_id,omitempty"`
	// Reusable, OS, MaxDevices: a reusable credential (see EnrollmentRequest); Uses is how many
	// devices enrolled with it, and UsedAt and DeviceID are then its last use. Its state is
	// pending while it can enroll more, used once MaxDevices did.
	Reusable   bool   `json:"reusable,omitempty"`
	OS         string `json:"os,omitempty"`
	MaxDevices int    `json:"max_devices,omitempty"`
	Uses       int    `json:"uses,omitempty"`
}

// NewEnrollment is the answer to POST /api/v1/enrollments: the enrollment with its one-time
// token, shown only here, and for Apple the address of its enrollment profile.
type NewEnrollment struct {
	Enrollment
	Token      string `json:"token"`
	ProfileURL string `json:"profile_url,omitempty"`
	// SignInURL is, for a BYOD enrollment, the page the device opens during account-driven
	// enrollment, where the person gives the token as the enrollment code.
	SignInURL string `json:"sign_in_url,omitempty"`
	// Android is the Android enrollment token of an android enrollment.
	Android *AndroidEnrollment `json:"android,omitempty"`
}

// Enrollments is GET /api/v1/enrollments.
type Enrollments struct {
	Enrollments []Enrollment `json:"enrollments"`
}
