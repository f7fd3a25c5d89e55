// Package applemdm is Hale's Apple MDM: the /mdm front door (a device's identity, checked before
// nanomdm sees the message), nanomdm's check-in and command service with Hale's decorators around
// it (the enrollment guard, the inventory link, the result hook), posture from command results,
// the delivery of each device's policy as configuration profiles, the enrollment profile and the
// SCEP challenge behind it, and the expiry of unanswered commands.
//
// nanomdm's service chain, from the outside in:
//
//	enrollmentGuard → certauth → inventoryLink → commands.Hook → nanomdm
//
// The guard refuses an identity that does not own the enrollment it names before certauth, which
// trusts a new identity on Authenticate, writes anything; the inventory link keeps each device's
// inventory record current and queues the posture queries of a new enrollment; the hook stores
// each result (and audits a security command's) before nanomdm marks the command done.
package applemdm

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/micromdm/nanomdm/service"
	"github.com/micromdm/nanomdm/service/certauth"
	"github.com/micromdm/nanomdm/service/nanomdm"
	nanostorage "github.com/micromdm/nanomdm/storage"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/certs/scep"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/nanolog"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/ddm"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/pushcert"
)

// Tx is what Apple MDM's own units of work reach: a SCEP issuance spends its challenge, creates
// the device and audits in one; a policy delivery is recorded in one.
type Tx interface {
	Enrollments() enroll.Repository
	Inventory() inventory.Repository
	Audit() audit.Repository
	Compliance() compliance.Repository
}

// Store runs Apple MDM's units of work (storage.Scope(st, func(tx storage.Tx) applemdm.Tx {
// return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction.
	Update(ctx context.Context, fn func(Tx) error) error
}

// WipeFinisher finishes a wipe its device acknowledged: it revokes the device's certificates and
// marks it wiped, idempotently.
type WipeFinisher interface {
	FinishWipe(ctx context.Context, d *inventory.Device, commandID string) error
}

// PushTopics lists the uploaded APNs push certificates (pushcert.Service): an enrollment profile
// names the first one's topic.
type PushTopics interface {
	List(ctx context.Context) ([]pushcert.Info, error)
}

// The enrollment endpoints of Apple devices, as Refusals counts them (the "endpoint" label of
// hale_enroll_refusals_total and the audit summary's endpoints).
const (
	EndpointProfile = "apple_profile" // GET /enroll/apple/{token}
	EndpointSCEP    = "scep"          // /scep PKIOperation
)

// Refusals counts the anonymous requests the enrollment endpoints refuse, per source: the
// server's tally, which the agent's enrollment endpoint shares, so that a source guessing tokens
// is slowed and summarized on the audit record whichever endpoint it tries.
type Refusals interface {
	// Allow reports whether r's source may try to enroll now. When it may not, Allow has
	// answered 429 and counted the refusal.
	Allow(w http.ResponseWriter, r *http.Request, endpoint string) bool
	// TokenRefused answers a refused enrollment token (401, saying why) and counts it.
	TokenRefused(w http.ResponseWriter, r *http.Request, endpoint string, err error)
	// Refused counts err against source when it refuses a token or challenge, and reports
	// whether it did; an error that is no refusal (the store failed) is not counted.
	Refused(ctx context.Context, source, endpoint string, err error) bool
	// Tally counts one refusal of source for reason.
	Tally(ctx context.Context, source, endpoint, reason string)
}

// Deps are the services Apple MDM runs on. Every field is required unless its comment says
// otherwise.
type Deps struct {
	// MDMStore is nanomdm's storage: enrollments, command queues, push tokens, certificate
	// associations.
	MDMStore nanostorage.AllStorage
	// Store runs Apple MDM's own units of work.
	Store Store
	// Results runs the result hook's units of work: a result and its audit entry commit together.
	Results commands.ResultStore

	// Inventory holds the device records check-ins keep current.
	Inventory *inventory.Service
	// Commands holds the commands' records; Dispatch queues new ones and pushes the device.
	Commands *commands.Service
	Dispatch *commands.Dispatcher
	// Compliance takes the posture results carry and holds the policies delivered as profiles.
	Compliance *compliance.Engine
	// Enrollments redeems enrollment tokens and holds the SCEP challenges.
	Enrollments *enroll.Service
	// PushCerts names the push topic an enrollment profile carries.
	PushCerts PushTopics
	// Wipes finishes acknowledged wipes (the security service).
	Wipes WipeFinisher
	// Refusals counts refused enrollment requests.
	Refusals Refusals
	// Audit is the audit log requests' actions are recorded in.
	Audit *audit.Log

	// CA issues device identities over SCEP and verifies them on /mdm; ServerCert signs
	// profiles.
	CA         *certs.Authority
	ServerCert *certs.ServerCert
	// VerifyExtraCA verifies a device identity from a CA besides Hale's (mdm_ca_file); nil when
	// none is configured.
	VerifyExtraCA func(chain []*x509.Certificate) error

	// PublicURL is the server's address as devices reach it.
	PublicURL string
	// CommandTTL is how long a command that is not a security command may wait for its device.
	CommandTTL time.Duration

	// Sealer seals the access tokens of account-driven enrollment (the master key).
	Sealer Sealer

	// DDM serves declarative device management; nil when it is off (Config.AppleDDM), and then
	// every device gets configuration profiles.
	DDM *ddm.Service
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger (default slog.Default()); nanomdm, the result hook and SCEP log to
// it with a component of their own.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock of posture (default time.Now): when a command result and the OS
// version an Authenticate reports were observed. The rest of Apple MDM keeps the wall clock.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// Service is Hale's Apple MDM. Create it with New; its handlers serve /mdm, the enrollment
// profile and SCEP; Close waits for the work it started in the background.
type Service struct {
	d   Deps
	log *slog.Logger
	now func() time.Time

	// mdm is nanomdm's service with Hale's decorators around it.
	mdm  service.CheckinAndCommandService
	scep http.Handler

	// deliveryLocks serialise each device's policy deliveries (a read of what was sent, the
	// sends, a record): device ID → *sync.Mutex.
	deliveryLocks sync.Map

	// background tracks work a check-in starts that outlives it (the first commands sent to a
	// newly enrolled device), so Close waits for it.
	background sync.WaitGroup
}

// New builds Apple MDM on d: nanomdm's service chain and the SCEP server.
func New(d Deps, opts ...Option) (*Service, error) {
	s := &Service{d: d, log: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	if d.MDMStore == nil || d.Store == nil || d.Results == nil || d.Inventory == nil || d.Commands == nil ||
		d.Dispatch == nil || d.Compliance == nil || d.Enrollments == nil || d.PushCerts == nil || d.Wipes == nil ||
		d.Refusals == nil || d.Audit == nil || d.CA == nil || d.ServerCert == nil || d.Sealer == nil {
		return nil, errors.New("applemdm: a required service is missing")
	}
	nanoLog := nanolog.New(s.log.With("component", "nanomdm"))
	nanoOpts := []nanomdm.Option{nanomdm.WithLogger(nanoLog)}
	if d.DDM != nil {
		nanoOpts = append(nanoOpts, nanomdm.WithDeclarativeManagement(d.DDM))
	}
	var svc service.CheckinAndCommandService = nanomdm.New(d.MDMStore, nanoOpts...)
	svc = commands.NewHook(svc, d.Results, commands.WithLogger(s.log.With("component", "results")),
		commands.WithClock(s.now), commands.WithListener(s.appleResult), commands.WithResultTx(s.auditResult))
	svc = &inventoryLink{CheckinAndCommandService: svc, s: s}
	// certauth: nothing below it sees a request whose certificate is not (or no longer) the one
	// bound to its enrollment. Never its warn-only mode. It writes a new identity's association
	// on Authenticate, so the enrollmentGuard, outermost, first checks that the identity owns
	// the enrollment it names.
	svc = certauth.New(svc, d.MDMStore, certauth.WithLogger(nanoLog.With("service", "certauth")))
	s.mdm = &enrollmentGuard{CheckinAndCommandService: svc, inventory: d.Inventory, commands: d.Commands}

	sc, err := scep.New(d.CA, s.scepChallenge, scep.WithLogger(s.log.With("component", "scep")))
	if err != nil {
		return nil, err
	}
	s.scep = withRemoteAddr(sc)
	return s, nil
}

// Close waits for the work check-ins started in the background.
func (s *Service) Close() { s.background.Wait() }

// auditor records requests' actions on the audit log.
func (s *Service) auditor() httpapi.Auditor { return httpapi.Auditor{Log: s.d.Audit, Logger: s.log} }

// securityCommands are the MDM commands whose every result goes on the audit record (the
// routine posture queries' results do not, or they would flood it), which an Authenticate must
// not drop from the queue, and which never expire.
var securityCommands = map[string]bool{"DeviceLock": true, "EnableLostMode": true, "DisableLostMode": true, "EraseDevice": true, "ClearPasscode": true}

// SecurityCommand reports whether requestType is a security command: one whose every result is
// audited, that a device enrolling again must not drop, and that never expires.
func SecurityCommand(requestType string) bool { return securityCommands[requestType] }

// ExpireCommands expires MDM commands unanswered for longer than CommandTTL, every interval,
// until ctx is done. Security commands never expire.
func (s *Service) ExpireCommands(ctx context.Context, every time.Duration) {
	for {
		n, err := s.d.Dispatch.Expire(ctx, s.d.CommandTTL, SecurityCommand)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "expiring commands failed", "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "commands expired", "count", n, "ttl", s.d.CommandTTL)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
