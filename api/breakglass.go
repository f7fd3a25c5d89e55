package api

import "time"

// BreakGlassRequest is the body of POST /agent/v1/break-glass (the device's owner, with the
// device's certificate) and POST /api/v1/devices/{id}/break-glass (a security person grants
// it): HIPAA's emergency access for a denied device.
type BreakGlassRequest struct {
	// Reason says why care cannot wait (10 to 1000 characters); it goes on the audit record.
	Reason string `json:"reason"`
	// Duration is how long access should stay open, such as "2h" (default and maximum: the
	// policy's break_glass.duration).
	Duration string `json:"duration,omitempty"`
}

// BreakGlassUse is one emergency access use, as the API shows it.
type BreakGlassUse struct {
	ID       string `json:"id"`
	DeviceID string `json:"device_id"`
	// Person is whose use it is (the device's owner).
	Person      string `json:"person"`
	Reason      string `json:"reason"`
	RequestedBy string `json:"requested_by"`
	// Channel is "device" (the owner, with the device's credential) or "security" (granted).
	Channel   string `json:"channel"`
	GrantedBy string `json:"granted_by,omitempty"`
	// Overrides are the reason codes the device was denied for, that the use lets through.
	Overrides     []string  `json:"overrides"`
	Policy        string    `json:"policy"`
	PolicyVersion int       `json:"policy_version"`
	StartedAt     time.Time `json:"started_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	// Active is true while it is in force.
	Active    bool      `json:"active"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndReason string    `json:"end_reason,omitempty"` // expired or revoked
	// Review is the security team's verdict; nil while it awaits one. Overdue: unreviewed a
	// day after it started.
	Review  *BreakGlassReview `json:"review,omitempty"`
	Overdue bool              `json:"overdue"`
}

// BreakGlassReview is a security person's review of a use.
type BreakGlassReview struct {
	Decision string    `json:"decision"` // approved or revoked
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Note     string    `json:"note,omitempty"`
}

// BreakGlassReviewRequest is the body of POST /api/v1/break-glass/{id}/review: approve, or
// revoke (a use still in force ends at once).
type BreakGlassReviewRequest struct {
	Decision string `json:"decision"`
	Note     string `json:"note,omitempty"`
}

// BreakGlassList is the answer of GET /api/v1/break-glass.
type BreakGlassList struct {
	Uses []BreakGlassUse `json:"uses"`
}

// MyDeviceLink is the answer to POST /agent/v1/my-device-link: a link to the device's own
// page (its status, what to fix, check again, emergency access), for its user's browser.
type MyDeviceLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}
