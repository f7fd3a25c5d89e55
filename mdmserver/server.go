package mdmserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/micromdm/nanomdm/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/nanolog"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/accessapi"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/agentapi"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/apns"
	"github.com/halemdm/hale/mdmserver/appapi"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/auditstream"
	"github.com/halemdm/hale/mdmserver/backup"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/breakglassapi"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/console"
	"github.com/halemdm/hale/mdmserver/ddm"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/gracewarn"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/mydevice"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/revocation"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/signing"
	halestorage "github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
	"github.com/halemdm/hale/mdmserver/tokens"
	nosqldb "github.com/smallstep/nosql/database"
)

// Server is a running Hale server's state. Create it with New, serve it with Serve or
// ListenAndServe, and Close it when done.
type Server struct {
	cfg Config
	log *slog.Logger

	store halestorage.Store
	// snapshots takes the backup's consistent snapshot (bbolt; nil on PostgreSQL, whose own
	// tools back it up). caDB is the CA's database, on the same backend as store.
	snapshots backup.Snapshotter
	caDB      nosqldb.DB
	// feedFrom is where a server on PostgreSQL starts following the change feed: its position
	// before its memory was loaded.
	feedFrom int64
	key      *seal.Key
	// mdmStore is nanomdm's storage: Hale's bbolt store unless WithMDMStorage replaced it.
	mdmStore  storage.AllStorage
	pushCerts *pushcert.Service
	tokens    *tokens.Service
	commands  *commands.Service
	dispatch  *commands.Dispatcher
	// apple is Apple MDM: /mdm, the enrollment profile, SCEP, posture from command results and
	// policy delivery.
	apple *applemdm.Service
	// ddm serves declarative device management (nil unless Config.AppleDDM).
	ddm *ddm.Service
	// The admin API's handlers, by area.
	tokenAPI      *adminapi.Tokens
	pushCertAPI   *adminapi.PushCerts
	enrollmentAPI *adminapi.Enrollments
	deviceAPI     *adminapi.Devices
	policyAPI     *adminapi.Policies
	commandAPI    *adminapi.Commands
	auditAPI      *adminapi.Audit
	backupAPI     *adminapi.Backup
	evidenceAPI   *adminapi.Evidence
	// auditStream streams the audit log to the configured SIEM sinks (nil without any).
	auditStream *auditstream.Streamer

	ca         *certs.Authority
	serverCert *certs.ServerCert
	// extraDeviceCAs are CAs besides Hale's whose client certificates identify devices.
	extraDeviceCAs     *x509.CertPool
	extraDeviceCACerts []*x509.Certificate

	inventory   *inventory.Service
	enrollments *enroll.Service
	// enrollGate rate-limits the anonymous enrollment endpoints per source and tallies what
	// they refuse, audited as one entry per source and window.
	enrollGate *httpapi.EnrollGate
	audit      *audit.Log
	policies   *compliance.PolicyStore
	compliance *compliance.Engine
	index      *access.Index
	agentQueue *agentcmd.Queue
	// keys sign posture tokens and security event tokens.
	keys *signing.Keyset
	// events delivers Security Event Tokens to the backends when decisions change.
	events *events.Transmitter
	// agentAPI serves the agent API and finds the device of an mTLS request; accessAPI serves
	// the access API's check and posture tokens.
	agentAPI  *agentapi.Handler
	accessAPI *accessapi.Handler
	// appInstances keeps the messaging app's instances; appAPI serves /app/v1 and IT's routes
	// for them (app_wiring.go).
	appInstances *appinstances.Service
	appAPI       *appapi.Handler
	// agentAppTokens issues desktop apps' key-bound tokens through their agent (desktop_wiring.go).
	agentAppTokens *agentapi.AppTokens
	// approvals holds the wipes held under the two-person rule.
	approvals *approvals.Service
	// security carries out lock, lost mode, wipe, approvals and unenroll; securityAPI and
	// approvalAPI serve them.
	security    *security.Service
	securityAPI *adminapi.Security
	approvalAPI *adminapi.Approvals
	// android manages Android phones through the Android Management API; androidAPI serves
	// its binding.
	android    *android.Service
	androidAPI *adminapi.Android
	// breakGlass is emergency access (breakglass_wiring.go).
	breakGlass    *breakglass.Service
	breakGlassAPI *breakglassapi.Handler
	graceWarn     *gracewarn.Warner
	myDevice      *mydevice.Handler
	auditKey      string // the audit log's public note verifier key

	// console is the web console (console_wiring.go).
	console *console.Console

	// background tracks work started by requests that outlives them (the first commands sent
	// to a newly enrolled device), so Close waits for it.
	background sync.WaitGroup

	registry *prometheus.Registry
	// backgroundLeader is 1 while this server runs the cluster's background work.
	backgroundLeader prometheus.Gauge
	handler          http.Handler

	// now is the compliance clock (WithClock).
	now func() time.Time
}

// Option configures a Server.
type Option func(*options)

type options struct {
	log        *slog.Logger
	apnsRoots  *x509.CertPool
	mdmStorage storage.AllStorage
	now        func() time.Time
	android    []android.Option
	afterFunc  func(d time.Duration, f func()) (stop func() bool)
}

// WithLogger sets the server's logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAPNsRootCAs trusts roots for the APNs connection instead of the system pool (tests with a
// fake APNs server; equivalent to Config.APNsCAFile).
func WithAPNsRootCAs(roots *x509.CertPool) Option { return func(o *options) { o.apnsRoots = roots } }

// WithClock sets the clock compliance runs on (default time.Now): when an Apple command result
// and its posture claims arrived, when verdicts are evaluated (staleness, grace), and when the
// access API answers. It exists so that tests can move past a policy's grace period honestly;
// TLS, tokens, certificates, the audit log and agent reports keep the wall clock.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithTimers sets how timers that fire at a time on the server's clock are made (default
// time.AfterFunc): with WithClock(c.Now), give testclock's c.AfterFunc, so that moving the clock
// fires them (a break-glass use's expiry, a grace warning).
func WithTimers(afterFunc func(d time.Duration, f func()) (stop func() bool)) Option {
	return func(o *options) { o.afterFunc = afterFunc }
}

// WithMDMStorage runs nanomdm on st instead of Hale's bbolt file. Hale's own records stay in
// bbolt. It exists for benchmarks against nanomdm's other backends and for deployments that move
// the MDM queue to PostgreSQL.
func WithMDMStorage(st storage.AllStorage) Option { return func(o *options) { o.mdmStorage = st } }

// New opens the data directory and builds every component. It does not listen yet.
func New(cfg Config, opts ...Option) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	o := options{log: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	s := &Server{cfg: cfg, log: o.log, registry: prometheus.NewRegistry(), now: o.now}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if s.key, err = loadMasterKey(cfg); err != nil {
		return nil, err
	}
	if err = s.openStore(context.Background(), o); err != nil {
		return nil, err
	}
	s.pushCerts = pushcert.NewService(pushCertsStore(s.store), s.key)
	tokenOpts := []tokens.Option{tokens.WithOnForbidden(s.recordForbidden), tokens.WithLogger(s.log.With("component", "tokens"))}
	if cfg.Database != "" {
		// Checked from memory, not a database round trip per request: each server keeps the
		// mirror with its own writes and the others' through the change feed.
		tokenOpts = append(tokenOpts, tokens.WithMirror())
	}
	if s.tokens, err = tokens.New(context.Background(), tokensStore(s.store), tokenOpts...); err != nil {
		return nil, err
	}
	s.approvals = approvals.New(approvalsStore(s.store))
	s.commands = commands.NewService(commandsStore(s.store))
	s.inventory = inventory.NewService(inventoryStore(s.store))
	s.enrollments = enroll.New(enrollStore(s.store))
	s.enrollGate = httpapi.NewEnrollGate(enroll.NewLimiter(cfg.EnrollRate, cfg.EnrollBurst), auditStore(s.store), s.registry,
		s.log.With("component", "enroll"))
	if s.audit, s.auditKey, err = openAudit(cfg, s.key, s.store, s.log); err != nil {
		return nil, err
	}
	if s.policies, err = compliance.NewPolicyStore(context.Background(), complianceStore(s.store)); err != nil {
		return nil, err
	}
	s.agentQueue = agentcmd.New(agentCommandsStore(s.store))
	s.index = access.NewIndex(access.WithClock(s.now))
	engineOpts := []compliance.Option{compliance.WithLogger(s.log.With("component", "compliance")), compliance.WithClock(s.now)}
	if s.followsFeed() {
		engineOpts = append(engineOpts, compliance.WithSharedStore())
	}
	if s.compliance, err = compliance.NewEngine(complianceStore(s.store), s.policies, s.index, engineOpts...); err != nil {
		return nil, err
	}
	// The decision index must be complete before the server answers anything: until then every
	// access check denies with index_not_loaded, and /readyz says not ready.
	loadStarted := time.Now()
	if err = s.compliance.Load(context.Background()); err != nil {
		return nil, fmt.Errorf("load decisions: %w", err)
	}
	if s.followsFeed() {
		// The index is as fresh as the snapshot it was loaded from, until the feed catches up.
		s.index.SetFreshUntil(loadStarted.Add(cfg.ReplicaStaleAfter))
	}
	if s.isAccessReplica() {
		if err = s.checkReplicaDatabase(context.Background()); err != nil {
			return nil, err
		}
	} else if err = s.bootstrapAdminToken(context.Background()); err != nil {
		return nil, err
	}
	if s.keys, err = signing.Open(context.Background(), signingStore(s.store), s.key, signing.WithLogger(s.log.With("component", "signing"))); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if s.events, err = s.newEvents(); err != nil {
		return nil, err
	}
	s.compliance.OnChange(revocation.NewEmitter(s.events, revocationStore(s.store), s.log.With("component", "revocation"),
		revocation.WithAppInstances(s.liveAppInstances)).Emit)
	if s.ca, err = certs.Open(cfg.path("ca"), s.key, certs.WithDB(s.caDB), certs.WithLogger(s.log.With("component", "ca")),
		certs.WithCRLURL(strings.TrimSuffix(cfg.PublicURL, "/")+"/ca/crl")); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	if s.serverCert, err = s.ca.ServerCertificate(serverNames(cfg)); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	if err = s.loadExtraDeviceCAs(); err != nil {
		return nil, err
	}
	pusher, err := s.newPusher(o.apnsRoots)
	if err != nil {
		return nil, err
	}
	s.dispatch = commands.NewDispatcher(s.commands, s.mdmStore, pusher,
		commands.WithDispatchLogger(s.log.With("component", "commands")), commands.WithPushMetrics(s.registry),
		commands.WithPushConcurrency(cfg.APNsConcurrency))

	if s.android, err = s.newAndroid(o.android); err != nil {
		return nil, fmt.Errorf("android: %w", err)
	}
	s.androidAPI = &adminapi.Android{Binder: androidAdmin{s}, Log: s.log}
	if s.security, err = s.newSecurity(); err != nil {
		return nil, err
	}
	s.securityAPI = &adminapi.Security{Devices: s.inventory, Service: s.security, Log: s.log}
	s.approvalAPI = &adminapi.Approvals{Requests: s.approvals, Service: s.security, Log: s.log}
	if s.ddm, err = s.newDDM(); err != nil {
		return nil, fmt.Errorf("declarative management: %w", err)
	}
	if s.apple, err = s.newApple(); err != nil {
		return nil, fmt.Errorf("apple mdm: %w", err)
	}
	s.tokenAPI = &adminapi.Tokens{Tokens: s.tokens, Auditor: s.auditor(), Log: s.log}
	s.pushCertAPI = &adminapi.PushCerts{Certs: s.pushCerts, Auditor: s.auditor(), Log: s.log}
	s.enrollmentAPI = &adminapi.Enrollments{Enrollments: s.enrollments, PublicURL: cfg.PublicURL, Auditor: s.auditor(), Log: s.log,
		Android: androidAdmin{s}}
	s.deviceAPI = &adminapi.Devices{Devices: s.inventory, Verdicts: s.compliance, Index: s.index, Log: s.log}
	s.policyAPI = &adminapi.Policies{Policies: s.policies, DryRun: s.compliance, Changed: policyChanges{s}, Auditor: s.auditor(), Log: s.log}
	s.auditAPI = &adminapi.Audit{Log: s.audit, VerifierKey: s.auditKey, Logger: s.log}
	s.backupAPI = s.newBackupAPI()
	s.evidenceAPI = &adminapi.Evidence{Devices: s.inventory, Decisions: s.index, Config: s.cfg.Redacted, Signer: s.audit,
		VerifierKey: s.auditKey, Auditor: s.auditor(), Log: s.log, Now: s.now}
	if s.auditStream, err = s.newAuditStream(); err != nil {
		return nil, err
	}
	s.commandAPI = &adminapi.Commands{Devices: s.inventory, Apple: s.commands, Send: s.dispatch, Agent: s.agentQueue,
		Auditor: s.auditor(), Log: s.log, MaxBodyBytes: cfg.MaxBodyBytes}
	s.agentAPI, s.accessAPI = s.newAgentAPI(), s.newAccessAPI()
	s.agentAppTokens = s.newAgentAppTokens()
	if s.breakGlass, s.breakGlassAPI, err = s.newBreakGlass(o); err != nil {
		return nil, err
	}
	if !s.isAccessReplica() { // the primary warns; a replica emits nothing
		s.graceWarn = s.newGraceWarn(o)
	}
	if s.appInstances, s.appAPI, err = s.newAppAPI(); err != nil {
		return nil, err
	}
	s.myDevice = s.newMyDevice()

	if s.console, err = s.newConsole(); err != nil {
		return nil, err
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.registerMetrics()
	routes := s.routes
	if s.isAccessReplica() {
		routes = s.replicaRoutes
	}
	s.handler = httpmw.Wrap(routes(), s.log, httpmw.NewMetrics(s.registry))
	if err = s.security.FinishAcknowledgedWipes(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// readCertPool reads a PEM bundle named by the configuration option opt.
func readCertPool(opt, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", opt, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", opt, path)
	}
	return pool, nil
}

// newEvents opens the security event transmitter. Receivers are reached with the system roots,
// or with Config.SSFCAFile when they use a private CA, at public addresses or those
// Config.SSFAllowedDestinations names; each stream belongs to the API token that created it.
func (s *Server) newEvents() (*events.Transmitter, error) {
	allow, err := events.ParseAllowList(s.cfg.SSFAllowedDestinations)
	if err != nil {
		return nil, fmt.Errorf("ssf_allowed_destinations: %w", err)
	}
	opts := []events.Option{events.WithLogger(s.log.With("component", "events")),
		events.WithAllowList(allow), events.WithCaller(streamCaller), events.WithRegisterer(s.registry)}
	if s.cfg.SSFCAFile != "" {
		roots, err := readCertPool("ssf_ca_file", s.cfg.SSFCAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, events.WithRootCAs(roots))
	}
	t, err := events.New(eventStore(s.store), s.keys, s.cfg.PublicURL, s.key, opts...)
	if err != nil {
		return nil, fmt.Errorf("security events: %w", err)
	}
	return t, nil
}

func (s *Server) newPusher(roots *x509.CertPool) (*pushsvc.PushService, error) {
	if roots == nil && s.cfg.APNsCAFile != "" {
		var err error
		if roots, err = readCertPool("apns_ca_file", s.cfg.APNsCAFile); err != nil {
			return nil, err
		}
	}
	newClient, err := apns.NewClientFunc(s.cfg.APNsURL, apns.WithRootCAs(roots))
	if err != nil {
		return nil, err
	}
	factory := nanopush.NewFactory(nanopush.WithNewClient(newClient))
	return pushsvc.New(s.mdmStore, s.pushCerts, factory, nanolog.New(s.log.With("component", "push"))), nil
}

// bootstrapAdminToken makes the first admin token on a store that has none and writes it to
// DATA/admin.token (0600), so a fresh install can be administered without any other step.
func (s *Server) bootstrapAdminToken(ctx context.Context) error {
	n, err := s.tokens.Count(ctx)
	if err != nil || n > 0 {
		return err
	}
	_, secret, err := s.tokens.Create(ctx, tokens.NewRequest{Name: "bootstrap", Role: tokens.RoleAdmin, Person: "bootstrap", CreatedBy: "mdmserver"})
	if err != nil {
		return fmt.Errorf("create bootstrap admin token: %w", err)
	}
	path := s.AdminTokenPath()
	if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write bootstrap admin token: %w", err)
	}
	s.log.Info("bootstrap admin token written; use it to log in mdmctl, then create named tokens and revoke it",
		"path", path)
	return nil
}

// AdminTokenPath is where the bootstrap admin token is written on first start.
func (s *Server) AdminTokenPath() string {
	p, err := filepath.Abs(s.cfg.path("admin.token"))
	if err != nil {
		return s.cfg.path("admin.token")
	}
	return p
}

// startWork starts this server's own periodic work, stopped with ctx: following the other
// servers on PostgreSQL, sending the pushes its requests queued, closing its enrollment rate
// windows; and the cluster's background work, on bbolt at once, on PostgreSQL while this server
// holds the background lease.
func (s *Server) startWork(ctx context.Context, work *sync.WaitGroup) {
	if s.followsFeed() {
		work.Go(func() { s.followChanges(ctx) })
	}
	if s.isAccessReplica() {
		return // a replica's only work: following the servers that write
	}
	work.Go(func() { s.dispatch.RunPushes(ctx) }) // the pushes of policy changes and refreshes
	work.Go(func() { s.enrollGate.Run(ctx, 10*time.Second) })
	if _, shared := s.store.(*pgstore.Store); shared {
		work.Go(func() { s.holdBackgroundLease(ctx) })
	} else {
		s.backgroundLeader.Set(1)
		s.startBackground(ctx, work)
	}
}

// startBackground starts the periodic work one server of a cluster runs, stopped with ctx:
// stored verdicts follow stale reports and ended grace periods (the index already denies them
// at read time), the audit log gets a signed checkpoint when it grew, keys rotate, events go out,
// commands expire, console sessions end.
func (s *Server) startBackground(ctx context.Context, work *sync.WaitGroup) {
	if s.followsFeed() {
		s.graceWarn.Lead(ctx, s.index.DeviceIDs()) // the grace_ending warnings; Follow when the lease goes
	}
	work.Go(func() { s.compliance.RunStaleness(ctx, time.Minute) })
	work.Go(func() { _ = s.audit.Run(ctx, 5*time.Minute) })
	work.Go(func() { s.keys.Run(ctx) })   // signing key rotation
	work.Go(func() { s.events.Run(ctx) }) // SET push delivery
	if s.auditStream != nil {
		work.Go(func() { s.auditStream.Run(ctx) })
	}
	work.Go(func() { s.apple.ExpireCommands(ctx, time.Hour) })
	work.Go(func() { s.apple.RefreshPosture(ctx, time.Minute) }) // Apple devices report only when asked
	work.Go(func() { s.android.RunReconcile(ctx, s.cfg.AndroidReconcileInterval) })
	work.Go(func() { s.console.Run(ctx, time.Minute) }) // console sessions' automatic logoff
	work.Go(func() { s.pruneChanges(ctx) })             // the change feed servers follow
}

// Store returns the server's store: bbolt (*boltstore.Store) or PostgreSQL (*pgstore.Store).
func (s *Server) Store() halestorage.Store { return s.store }

// Handler returns the server's complete HTTP handler (all routes and middleware).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTPS on ln until ctx is done, then shuts down gracefully: it stops accepting,
// lets in-flight requests finish (up to Config.ShutdownTimeout) and returns. Close the Server
// afterwards to close the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// Long enough for agent long polls (30s) with margin.
		WriteTimeout:   90 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	// Periodic work, stopped with the server.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	s.startWork(workCtx, &work)
	defer func() { stopWork(); work.Wait() }()
	s.log.Info("serving", "addr", ln.Addr().String(), "public_url", s.cfg.PublicURL, "data", s.cfg.DataDir, "role", s.cfg.Role)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down: waiting for in-flight requests", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAndServe listens on Config.Listen and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Close waits for background work, then closes the CA and the store. It is safe to call on a
// partly built Server.
func (s *Server) Close() error {
	if s.breakGlass != nil {
		s.breakGlass.Close()
	}
	if s.graceWarn != nil {
		s.graceWarn.Close()
	}
	s.background.Wait()
	if s.apple != nil {
		s.apple.Close()
	}
	if s.enrollGate != nil && s.audit != nil {
		// Windows still open: their counts go on the record now rather than with the process.
		s.enrollGate.AuditAll(time.Now())
	}
	var errs []error
	if s.ca != nil {
		errs = append(errs, s.ca.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes data to path through a synced temporary file and a rename, so a crash
// leaves either the old file or the complete new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
