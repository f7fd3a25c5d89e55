package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/halemdm/hale/internal/text"
)

// SetAgentVersion records the version agent id reports, at now. The same version again writes
// nothing, so callers may call it on every report.
func SetAgentVersion(ctx context.Context, r Repository, id, version string, now time.Time) (*Device, error) {
	if version == "" || len(version) > maxText || !text.Printable(version) {
		return nil, fmt.Errorf("%w: agent version must be printable text up to %d bytes", ErrInvalid, maxText)
	}
	d, err := r.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.AgentVersion == version {
		return d, nil
	}
	return Update(ctx, r, id, now, func(d *Device) error {
		d.AgentVersion = version
		return nil
	})
}

// SetAgentVersion records the version agent id reports (see the function SetAgentVersion).
func (s *Service) SetAgentVersion(ctx context.Context, id, version string) (*Device, error) {
	return s.write(ctx, func(r Repository) (*Device, error) { return SetAgentVersion(ctx, r, id, version, s.now()) })
}
