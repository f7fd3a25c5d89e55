package mdmserver

import (
	"context"
	"errors"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/revocation"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/policies"
)

// WithAndroidOptions adds options to the Android management (tests: android.WithEndpoint is
// Config.AndroidAPIURL; android.WithoutServiceAccountAuth talks to a fake without credentials).
func WithAndroidOptions(opts ...android.Option) Option {
	return func(o *options) { o.android = append(o.android, opts...) }
}

// newAndroid builds the Android management on the server's services; the compliance engine,
// the enrollments and the agent command queue must exist. Its wipes finish through the
// security service, read when a wipe finishes.
func (s *Server) newAndroid(extra []android.Option) (*android.Service, error) {
	opts := []android.Option{android.WithLogger(s.log.With("component", "android")), android.WithClock(s.now),
		android.WithPublicURL(s.cfg.PublicURL), android.WithMetrics(s.registry),
		android.WithPush(s.cfg.AndroidPushAudience, s.cfg.AndroidPushServiceAccount, s.cfg.AndroidGoogleKeysURL)}
	if s.cfg.AndroidAPIURL != "" {
		opts = append(opts, android.WithEndpoint(s.cfg.AndroidAPIURL))
	}
	return android.New(android.Deps{
		Store: androidStore(s.store), Key: s.key, Devices: s.inventory,
		Posture:  androidPosture{s},
		Policies: s.policies, Commands: s.agentQueue, Wipes: wipeFinisher{s}, Audit: s.audit,
	}, append(opts, extra...)...)
}

// androidPosture feeds AMAPI device reports to the compliance engine, and device changes to
// the decision index and the security events.
type androidPosture struct{ s *Server }

func (p androidPosture) Ingest(ctx context.Context, id string, update func(*policies.Posture)) (policies.Verdict, error) {
	return p.s.compliance.IngestAppleResult(ctx, id, update)
}

func (p androidPosture) DeviceChanged(ctx context.Context, id string) {
	revocation.Reevaluator{Devices: p.s.inventory, Engine: p.s.compliance, Log: p.s.log}.DeviceChanged(ctx, id, "")
}

// androidSecurity gives the security service the Android commands, its refusals in the
// service's terms.
type androidSecurity struct{ s *Server }

func (a androidSecurity) Allowed(ctx context.Context, d *inventory.Device, wipe bool, mode string) error {
	return securityRefusal(a.s.android.Allowed(ctx, d, wipe, mode))
}

func (a androidSecurity) Issue(ctx context.Context, d *inventory.Device, cmd agentcmd.Command, message, phone string) error {
	return securityRefusal(a.s.android.Issue(ctx, d, cmd, message, phone))
}

func securityRefusal(err error) error {
	var ref *android.Refusal
	if !errors.As(err, &ref) {
		return err
	}
	kind := security.ErrInvalid
	switch ref.Status {
	case 409:
		kind = security.ErrInvalidState
	case 502:
		kind = security.ErrUpstream
	}
	return &security.Refusal{Kind: kind, Detail: ref.Detail}
}

// androidAdmin gives the admin API the binding and the enrollment tokens, its refusals as
// problem details.
type androidAdmin struct{ s *Server }

var _ adminapi.AndroidBinder = androidAdmin{}

func (a androidAdmin) Bind(ctx context.Context, req api.AndroidBindRequest, by audit.Entry) (*api.AndroidBinding, error) {
	b, err := a.s.android.Bind(ctx, android.BindRequest{Enterprise: req.Enterprise, Topic: req.Topic,
		ServiceAccountKey: req.ServiceAccountKey, SignupURLName: req.SignupURLName, EnterpriseToken: req.EnterpriseToken}, by)
	if err != nil {
		return nil, problemOf(err)
	}
	return a.wire(b), nil
}

func (a androidAdmin) Signup(ctx context.Context, req api.AndroidSignupRequest) (*api.AndroidSignup, error) {
	if len(req.AdminEmail) > 256 {
		return nil, problem.New(400, "invalid-request", "admin_email is longer than 256 bytes")
	}
	u, err := a.s.android.Signup(ctx, req.ServiceAccountKey, req.AdminEmail)
	if err != nil {
		return nil, problemOf(err)
	}
	return &api.AndroidSignup{Name: u.Name, URL: u.URL, CallbackURL: u.CallbackURL}, nil
}

func (a androidAdmin) Binding(ctx context.Context) (*api.AndroidBinding, error) {
	b, err := a.s.android.Binding(ctx)
	if errors.Is(err, android.ErrNotBound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return a.wire(b), nil
}

func (a androidAdmin) wire(b *android.Binding) *api.AndroidBinding {
	return &api.AndroidBinding{Enterprise: b.Enterprise, ServiceAccount: b.ServiceAccount, Topic: b.Topic,
		BoundAt: b.BoundAt, BoundBy: b.BoundBy, PushPath: android.PushPath, PushAudience: a.s.android.PushAudience()}
}

func (a androidAdmin) Enroll(ctx context.Context, e *enroll.Enrollment, token string, byod bool) (*api.AndroidEnrollment, error) {
	out, err := a.s.android.Enroll(ctx, e, token, byod)
	if err != nil {
		return nil, problemOf(err)
	}
	return &api.AndroidEnrollment{Link: out.Link, QRCode: out.QRCode, QRPNG: out.QRPNG, TokenName: out.Name,
		Policy: out.Policy, ExpiresAt: out.ExpiresAt}, nil
}

// problemOf is an android refusal as problem details; anything else is returned as is.
func problemOf(err error) error {
	var ref *android.Refusal
	if errors.As(err, &ref) {
		return problem.New(ref.Status, "android-refused", ref.Detail)
	}
	return err
}
