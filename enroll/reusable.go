package enroll

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// MaxReusableTTL bounds a reusable credential's life: an installer is pushed to a fleet over
// weeks or months, but a credential that never expires is a standing secret on every laptop.
const MaxReusableTTL = 365 * 24 * time.Hour

// MaxReusableDevices bounds a reusable credential's device count.
const MaxReusableDevices = 100000

// ErrExhausted is returned when a reusable credential already enrolled its maximum number of
// devices. It wraps ErrUsed, so callers that treat a used token alike need not know of it.
var ErrExhausted = fmt.Errorf("%w: the reusable enrollment enrolled its maximum number of devices", ErrUsed)

// checkReusable validates the reusable fields of a normalized request. Errors wrap ErrInvalid.
func (r *Request) checkReusable() error {
	if !r.Reusable {
		if r.OS != "" || r.MaxDevices != 0 {
			return fmt.Errorf("%w: os and max_devices are for reusable enrollments", ErrInvalid)
		}
		return nil
	}
	switch {
	case r.Platform != PlatformAgent:
		return fmt.Errorf("%w: a reusable enrollment is for agents (platform %q); Apple and Android devices enroll with one-time tokens", ErrInvalid, PlatformAgent)
	case r.BYOD:
		return fmt.Errorf("%w: a reusable enrollment cannot be byod", ErrInvalid)
	case !slices.Contains(agentOSes, r.OS):
		return fmt.Errorf("%w: os %q is not one of %v", ErrInvalid, r.OS, agentOSes)
	case r.MaxDevices < 1 || r.MaxDevices > MaxReusableDevices:
		return fmt.Errorf("%w: max_devices %d is outside 1 to %d", ErrInvalid, r.MaxDevices, MaxReusableDevices)
	}
	return nil
}

// RedeemAgent checks a token an agent running os presents and redeems it for deviceID at now.
// A one-time agent token is spent as Redeem spends it. A reusable credential counts one more
// use and records it as its last; it is refused once it enrolled its maximum number of devices
// (ErrExhausted), for an agent on another OS (ErrWrongPlatform), expired or revoked. Run in one
// unit of work, concurrent redemptions never exceed the maximum.
func RedeemAgent(ctx context.Context, repo Repository, token, os, deviceID string, now time.Time) (*Enrollment, error) {
	if err := checkText("device id", deviceID, false); err != nil {
		return nil, err
	}
	rec, err := check(ctx, repo, token, PlatformAgent, false, now)
	if err != nil {
		return nil, err
	}
	if rec.Reusable {
		if rec.OS != os {
			return nil, fmt.Errorf("%w: the reusable enrollment is for %s agents, not %s", ErrWrongPlatform, rec.OS, os)
		}
		rec.Uses++
	}
	rec.UsedAt = now.UTC()
	rec.DeviceID = deviceID
	if err := repo.Put(ctx, rec); err != nil {
		return nil, err
	}
	return rec.at(now), nil
}

// RedeemAgent redeems an agent's token in one transaction (see the function RedeemAgent).
func (s *Service) RedeemAgent(ctx context.Context, token, os, deviceID string) (*Enrollment, error) {
	return s.change(ctx, func(repo Repository, now time.Time) (*Enrollment, error) {
		return RedeemAgent(ctx, repo, token, os, deviceID, now)
	})
}
