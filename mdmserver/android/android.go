// Package android manages Android phones through Google's Android Management API (AMAPI), with
// the organisation's own enterprise and service account: binding to the enterprise (its key
// sealed at rest, its Pub/Sub notifications configured), rendering each Hale policy to an AMAPI
// policy, enrollment tokens tied to Hale's enrollments, posture from device status reports
// (Pub/Sub push, verified and de-duplicated, and a reconcile loop over devices.list), and lock,
// lost mode and wipe.
//
// The AMAPI calls go through the official client, google.golang.org/api/androidmanagement/v1;
// its base URL is configurable ([WithEndpoint]) so that tests run against internal/fakeamapi.
package android

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Devices creates and reads Hale's device records (an *inventory.Service).
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
	Update(ctx context.Context, id string, fn func(*inventory.Device) error) (*inventory.Device, error)
	SetState(ctx context.Context, id string, state inventory.State, at time.Time) (*inventory.Device, error)
}

// Posture takes a device's posture claims and re-derives its verdict (a compliance engine).
type Posture interface {
	// Ingest applies update to a copy of the device's posture, commits it and publishes the
	// new verdict.
	Ingest(ctx context.Context, deviceID string, update func(*policies.Posture)) (policies.Verdict, error)
	// DeviceChanged re-evaluates a device after its record changed (a new enrollment).
	DeviceChanged(ctx context.Context, deviceID string)
}

// Policies finds the Hale policy in force for a device (a *compliance.PolicyStore).
type Policies interface {
	Effective(d *inventory.Device) (*compliance.StoredPolicy, error)
}

// Commands records the results of the lock, lost mode and wipe commands the security service
// queued for Android phones (an *agentcmd.Queue: the same command records agents have).
type Commands interface {
	Get(ctx context.Context, deviceID, id string) (*agentcmd.Command, error)
	Complete(ctx context.Context, deviceID, id string, r agentcmd.Result) (cmd *agentcmd.Command, first bool, err error)
	List(ctx context.Context, deviceID string) ([]agentcmd.Command, error)
}

// Wipes finishes a wipe Google accepted (the security service's FinishWipe).
type Wipes interface {
	FinishWipe(ctx context.Context, d *inventory.Device, commandID string) error
}

// Auditor appends an audit entry in a unit of work of its own (an *audit.Log).
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
}

// Deps are the services the Android management uses. Every field must be set.
type Deps struct {
	Store    Store
	Key      *seal.Key
	Devices  Devices
	Posture  Posture
	Policies Policies
	Commands Commands
	Wipes    Wipes
	Audit    Auditor
}

// Option configures a Service.
type Option func(*Service)

// WithEndpoint sets the AMAPI base URL (default Google's, https://androidmanagement.googleapis.com/).
func WithEndpoint(url string) Option { return func(s *Service) { s.endpoint = url } }

// WithClientOptions adds options to every AMAPI client the service makes. With
// option.WithoutAuthentication among them (tests against a fake), the service account key is
// kept sealed but not used to authenticate.
func WithClientOptions(opts ...option.ClientOption) Option {
	return func(s *Service) { s.clientOpts = append(s.clientOpts, opts...) }
}

// WithoutServiceAccountAuth makes the AMAPI client send no credentials (tests against a fake).
func WithoutServiceAccountAuth() Option {
	return func(s *Service) { s.noAuth = true; s.clientOpts = append(s.clientOpts, option.WithoutAuthentication()) }
}

// WithPush configures the Pub/Sub push endpoint's verification: the ID token's audience (the
// push subscription's configured audience, by default the endpoint's URL), the service account
// the subscription pushes as (empty accepts any Google-signed account), and where Google's
// signing keys are (default GoogleKeysURL).
func WithPush(audience, serviceAccount, keysURL string) Option {
	return func(s *Service) {
		s.audience, s.pushAccount = audience, serviceAccount
		if keysURL != "" {
			s.keys.url = keysURL
		}
	}
}

// WithHTTPClient sets the client that fetches Google's keys (default http.DefaultClient).
func WithHTTPClient(c *http.Client) Option { return func(s *Service) { s.keys.client = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithPublicURL sets the server's external URL, whose /android/pubsub is the default push
// audience.
func WithPublicURL(u string) Option { return func(s *Service) { s.publicURL = u } }

// Service is the Android management. Its methods are safe for concurrent use.
type Service struct {
	dep         Deps
	endpoint    string
	clientOpts  []option.ClientOption
	noAuth      bool
	audience    string
	pushAccount string
	publicURL   string
	keys        keySet
	log         *slog.Logger
	now         func() time.Time

	mu sync.Mutex
	// client is the AMAPI client of the binding made at boundAt.
	client  *androidmanagement.Service
	boundAt time.Time
	// synced maps an AMAPI policy name to the version and hash of the Hale policy this server
	// last patched into it. Reconcile starts it afresh, so what another server patched in
	// between is set right at the next pass.
	synced map[string]string
	// ownership caches each phone's ownership from its last report (name → COMPANY_OWNED or
	// PERSONALLY_OWNED), for the wipe mode check.
	ownership map[string]string
	// pushes counts pushes by outcome (WithMetrics); nil counts nothing.
	pushes *prometheus.CounterVec
}

// New returns a Service on d.
func New(d Deps, opts ...Option) (*Service, error) {
	if d.Store == nil || d.Key == nil || d.Devices == nil || d.Posture == nil ||
		d.Policies == nil || d.Commands == nil || d.Wipes == nil || d.Audit == nil {
		return nil, errors.New("android: every dependency must be set")
	}
	s := &Service{dep: d, log: slog.Default(), now: time.Now, synced: map[string]string{}, ownership: map[string]string{},
		keys: keySet{url: GoogleKeysURL, client: http.DefaultClient}}
	for _, o := range opts {
		o(s)
	}
	if s.audience == "" && s.publicURL != "" {
		s.audience = s.publicURL + PushPath
	}
	s.keys.now = s.now
	return s, nil
}

// PushPath is where Pub/Sub pushes the enterprise's notifications.
const PushPath = "/android/pubsub"

// binding reads the binding.
func (s *Service) binding(ctx context.Context) (*Binding, error) {
	var b *Binding
	err := s.dep.Store.View(ctx, func(tx Tx) error {
		var err error
		b, err = tx.Android().Binding(ctx)
		return err
	})
	return b, err
}

// amapi returns the AMAPI client of the current binding, made once per binding.
func (s *Service) amapi(ctx context.Context) (*androidmanagement.Service, *Binding, error) {
	b, err := s.binding(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil && s.boundAt.Equal(b.BoundAt) {
		return s.client, b, nil
	}
	key, err := s.dep.Key.Open(sealPurpose(b.Enterprise), b.SealedKey)
	if err != nil {
		return nil, nil, errors.New("android: the service account key cannot be unsealed with this master key")
	}
	c, err := s.newClient(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	s.client, s.boundAt = c, b.BoundAt
	return c, b, nil
}

// newClient makes an AMAPI client authenticating with the service account key.
func (s *Service) newClient(ctx context.Context, key []byte) (*androidmanagement.Service, error) {
	opts := append([]option.ClientOption{}, s.clientOpts...)
	if s.endpoint != "" {
		opts = append(opts, option.WithEndpoint(s.endpoint))
	}
	if !s.noAuth {
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, key),
			option.WithScopes(androidmanagement.AndroidmanagementScope))
	}
	return androidmanagement.NewService(ctx, opts...)
}

// sealPurpose binds a sealed key to its enterprise: a sealed key copied to another binding
// does not open.
func sealPurpose(enterprise string) string { return "android/service-account/" + enterprise }

// audit records e with the service's clock, logging a failure: the change it records already
// committed.
func (s *Service) audit(ctx context.Context, e audit.Entry) {
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeOK
	}
	if _, err := s.dep.Audit.Append(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "android: audit append failed", "action", e.Action, "err", err)
	}
}

// PushAudience is the audience pushes must carry.
func (s *Service) PushAudience() string { return s.audience }
