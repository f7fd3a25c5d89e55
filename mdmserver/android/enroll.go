package android

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/skip2/go-qrcode"
	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// EnrollLinkBase is where a phone's user opens an enrollment token (a personal phone adds its
// work profile there; a company phone scans the QR code in its setup wizard instead).
const EnrollLinkBase = "https://enterprise.google.com/android/enroll?et="

// Enrollment is an AMAPI enrollment token made for a Hale enrollment.
type Enrollment struct {
	// Name is the token's resource name; Value the token itself.
	Name, Value string
	// Link opens the enrollment on the phone; QRCode is the provisioning JSON a phone's setup
	// wizard scans, and QRPNG that JSON as a QR code image.
	Link, QRCode string
	QRPNG        []byte
	// Policy is the AMAPI policy the phone gets.
	Policy    string
	ExpiresAt time.Time
}

// qrSize is the QR code image's side in pixels: readable across a desk.
const qrSize = 512

// Enroll makes the AMAPI enrollment token of Hale enrollment e, whose one-time token is
// haleToken: one-time, expiring with e, with the AMAPI policy of the Hale policy e's group gets
// (a work profile's when byod), carrying haleToken back when the phone enrolls.
func (s *Service) Enroll(ctx context.Context, e *enroll.Enrollment, haleToken string, byod bool) (*Enrollment, error) {
	if e.Platform != enroll.PlatformAndroid {
		return nil, fmt.Errorf("android: enrollment %s is for %s", e.ID, e.Platform)
	}
	c, b, err := s.amapi(ctx)
	if errors.Is(err, ErrNotBound) {
		return nil, refuse(409, "no Android enterprise is bound; bind one first (mdmctl android bind)")
	} else if err != nil {
		return nil, err
	}
	sp, err := s.dep.Policies.Effective(&inventory.Device{Group: e.Group})
	if err != nil {
		return nil, err
	}
	policy, err := s.syncPolicy(ctx, c, b, sp, byod)
	if err != nil {
		return nil, refuse(502, "%v", err)
	}
	ttl := time.Until(e.ExpiresAt).Round(time.Second)
	if ttl < time.Minute {
		return nil, refuse(400, "enrollment %s expires too soon for an Android enrollment token", e.ID)
	}
	usage := "PERSONAL_USAGE_DISALLOWED"
	if byod {
		usage = "PERSONAL_USAGE_ALLOWED"
	}
	tok := &androidmanagement.EnrollmentToken{
		PolicyName: policy, Duration: fmt.Sprintf("%ds", int64(ttl/time.Second)), OneTimeOnly: true,
		AllowPersonalUsage: usage, AdditionalData: haleToken,
	}
	got, err := c.Enterprises.EnrollmentTokens.Create(b.Enterprise, tok).Context(ctx).Do()
	if err != nil {
		return nil, refuse(502, "creating the Android enrollment token failed: %v", err)
	}
	png, err := qrcode.Encode(got.QrCode, qrcode.Medium, qrSize)
	if err != nil {
		return nil, fmt.Errorf("android: QR code: %w", err)
	}
	out := &Enrollment{Name: got.Name, Value: got.Value, Link: EnrollLinkBase + url.QueryEscape(got.Value),
		QRCode: got.QrCode, QRPNG: png, Policy: policy, ExpiresAt: e.ExpiresAt}
	if t, err := time.Parse(time.RFC3339Nano, got.ExpirationTimestamp); err == nil {
		out.ExpiresAt = t
	}
	return out, nil
}
