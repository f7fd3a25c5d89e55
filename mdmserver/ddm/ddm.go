// Package ddm is Hale's declarative device management (DDM) server: it renders each Apple
// device's declarations from its effective policy (policies.RenderDeclarations), serves the
// protocol's tokens, declaration-items and declaration endpoints through nanomdm's
// service.DeclarativeManagement interface, hosts the profiles legacy declarations point at,
// and turns status reports into posture claims (provenance mdm, stamped with the report's
// arrival) the moment they arrive, so the decision index and the security events follow at once.
//
// Nothing is stored per device: declarations and their tokens are a pure function of the
// device's platform and effective policy, so a policy change changes the tokens by itself,
// and the caller (applemdm's policy delivery) pushes the DeclarativeManagement command.
package ddm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/micromdm/nanomdm/mdm"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// MaxStatusReport bounds a status report's JSON; a larger one is refused unread.
const MaxStatusReport = 1 << 20

// Devices finds device records by ID and by nanomdm enrollment (inventory.Service).
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
	GetByEnrollmentID(ctx context.Context, enrollmentID string) (*inventory.Device, error)
}

// Policies resolves a device's effective policy (compliance.PolicyStore).
type Policies interface {
	Effective(d *inventory.Device) (*compliance.StoredPolicy, error)
}

// Posture takes status reports into a device's posture and reads it back (compliance.Engine).
type Posture interface {
	IngestAppleResult(ctx context.Context, deviceID string, update func(*policies.Posture)) (policies.Verdict, error)
	Verdict(deviceID string) (policies.Verdict, *policies.Posture, bool)
}

// Auditor appends to the audit log (audit.Log).
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
}

// Deps are what the DDM server runs on; every field is required.
type Deps struct {
	Devices  Devices
	Policies Policies
	Posture  Posture
	Audit    Auditor
	// Signer signs the legacy profiles when a device downloads them.
	Signer policies.ProfileSigner
	// ProfileOptions renders the profiles inside legacy declarations (escrow certificate and
	// location for FileVault); its Signer must be nil.
	ProfileOptions func() policies.RenderOptions
	// PublicURL is the server's https address; legacy profile URLs are under it.
	PublicURL string
	// URLKey keys the MAC of legacy profile URLs (32 bytes, stable across restarts).
	URLKey []byte
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock status reports are stamped with (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// Service serves declarative management. Create it with New.
type Service struct {
	d   Deps
	log *slog.Logger
	now func() time.Time
}

// New builds the DDM server on d.
func New(d Deps, opts ...Option) (*Service, error) {
	if d.Devices == nil || d.Policies == nil || d.Posture == nil || d.Audit == nil || d.Signer == nil ||
		d.ProfileOptions == nil || len(d.URLKey) < 32 || !strings.HasPrefix(d.PublicURL, "https://") {
		return nil, errors.New("ddm: a required dependency is missing (or the public URL is not https)")
	}
	s := &Service{d: d, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Serves reports whether d is managed declaratively: an enrolled Apple device whose OS (the
// version its posture last reported) runs every declaration Hale renders. Older devices keep
// configuration profiles.
func (s *Service) Serves(d *inventory.Device) bool {
	if d == nil || d.Platform != inventory.PlatformApple || d.OS == "" || d.State.Ended() {
		return false
	}
	_, p, ok := s.d.Posture.Verdict(d.ID)
	if !ok || p == nil || p.OS == nil {
		return false
	}
	return policies.SupportsDeclarative(policies.Platform(d.OS), p.OS.Value.Version)
}

// Set is a device's declarations and the profiles its legacy declarations point at.
type Set struct {
	Declarations []policies.Declaration
	Profiles     []policies.Profile
	// Token is the declarations token: it changes whenever any declaration does.
	Token string
	// Since is when the effective policy last changed (the tokens' timestamp).
	Since time.Time
}

// Declarations renders d's declarations from its effective policy. A device with no policy
// gets only its status subscriptions, so its posture still flows.
func (s *Service) Declarations(d *inventory.Device) (*Set, error) {
	sp, err := s.d.Policies.Effective(d)
	if err != nil {
		return nil, fmt.Errorf("ddm: effective policy of %s: %w", d.ID, err)
	}
	pl := policies.Platform(d.OS)
	pol := &policies.Policy{Name: "none"}
	since := time.Unix(0, 0).UTC()
	if sp != nil {
		pol, since = sp.Policy, sp.UpdatedAt.UTC()
	}
	opts := policies.DeclarationOptions{Profiles: s.d.ProfileOptions(), UserEnrollment: d.UserEnrollment,
		ProfileURL: func(p policies.Profile) (string, error) { return s.profileURL(d.ID, p), nil }}
	opts.Profiles.Signer = nil
	decls, profiles, err := policies.RenderDeclarations(pol, pl, opts)
	if err != nil {
		return nil, err
	}
	return &Set{Declarations: decls, Profiles: profiles, Token: policies.DeclarationsToken(decls), Since: since}, nil
}

// CommandData is the Data of a DeclarativeManagement command for set: the tokens the device
// would otherwise fetch first.
func CommandData(set *Set) ([]byte, error) { return json.Marshal(tokensResponse(set)) }

type syncTokens struct {
	DeclarationsToken string `json:"DeclarationsToken"`
	Timestamp         string `json:"Timestamp"`
}

func tokensResponse(set *Set) map[string]any {
	return map[string]any{"SyncTokens": syncTokens{DeclarationsToken: set.Token, Timestamp: set.Since.Format(time.RFC3339)}}
}

type manifestItem struct {
	Identifier  string `json:"Identifier"`
	ServerToken string `json:"ServerToken"`
}

// DeclarativeManagement answers a device's DeclarativeManagement check-in
// (service.DeclarativeManagement): "tokens", "declaration-items",
// "declaration/{category}/{identifier}" and "status".
func (s *Service) DeclarativeManagement(r *mdm.Request, m *mdm.DeclarativeManagement) ([]byte, error) {
	ctx := r.Context()
	if m.UserID != "" || m.EnrollmentUserID != "" {
		return nil, errors.New("ddm: declarations are served on the device channel only")
	}
	d, err := s.d.Devices.GetByEnrollmentID(ctx, r.ID)
	if err != nil {
		return nil, fmt.Errorf("ddm: enrollment %s has no device record: %w", r.ID, err)
	}
	if d.State.Ended() {
		return nil, fmt.Errorf("ddm: device %s is %s", d.ID, d.State)
	}
	endpoint := m.Endpoint
	if endpoint == "status" {
		if len(m.Data) == 0 || len(m.Data) > MaxStatusReport {
			return nil, fmt.Errorf("ddm: status report of %d bytes (1..%d)", len(m.Data), MaxStatusReport)
		}
		return nil, s.ingestStatus(ctx, d, m.Data)
	}
	set, err := s.Declarations(d)
	if err != nil {
		return nil, err
	}
	switch {
	case endpoint == "tokens":
		return json.Marshal(tokensResponse(set))
	case endpoint == "declaration-items":
		byCat := map[string][]manifestItem{"activation": {}, "configuration": {}, "asset": {}, "management": {}}
		for _, dc := range set.Declarations {
			byCat[dc.Category()] = append(byCat[dc.Category()], manifestItem{dc.Identifier, dc.ServerToken})
		}
		return json.Marshal(map[string]any{
			"Declarations": map[string]any{"Activations": byCat["activation"], "Configurations": byCat["configuration"],
				"Assets": byCat["asset"], "Management": byCat["management"]},
			"DeclarationsToken": set.Token,
		})
	case strings.HasPrefix(endpoint, "declaration/"):
		cat, id, ok := strings.Cut(strings.TrimPrefix(endpoint, "declaration/"), "/")
		if ok {
			for _, dc := range set.Declarations {
				if dc.Identifier == id && dc.Category() == cat {
					return json.Marshal(dc)
				}
			}
		}
		return nil, fmt.Errorf("ddm: device %s has no declaration %q", d.ID, clip(endpoint))
	}
	return nil, fmt.Errorf("ddm: unknown endpoint %q", clip(endpoint))
}

// clip bounds device-supplied text quoted in errors and logs.
func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}
