// Package mdmserver composes the Hale server: the bbolt store, nanomdm's Apple MDM service, the
// certificate authority, the admin, agent and access APIs, and their HTTP routing.
package mdmserver

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/console"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// Config is the server's configuration. The zero value is not usable; start from Defaults.
// cmd/mdmserver fills it from flags, HALE_* environment variables and a YAML file, in that order
// of precedence.
type Config struct {
	// Listen is the HTTPS listen address.
	Listen string `mapstructure:"listen"`
	// DataDir holds hale.db, the master key (by default), the CA and the bootstrap admin token.
	DataDir string `mapstructure:"data"`
	// Database is a PostgreSQL connection URL (postgres://user:pass@host/db?sslmode=verify-full)
	// for the server's state. Empty: bbolt in DATA/hale.db, the embedded default. On PostgreSQL
	// the data directory still holds the CA's key and the master key (unless given otherwise).
	Database string `mapstructure:"database" secret:"true"`
	// Role is what this server does on a shared PostgreSQL database: "primary" (the default:
	// everything; any number of primaries serve one database, and the one holding the
	// background lease runs the cluster's background work) or "access" (an access replica: it
	// serves only the access API's decisions, from memory kept current from the database's
	// change feed, and writes nothing).
	Role string `mapstructure:"role"`
	// ReplicaStaleAfter is how long a server on PostgreSQL keeps answering access decisions after
	// it last caught up with the change feed (what the other servers wrote); past it every
	// decision is a deny (index_stale) until it catches up.
	ReplicaStaleAfter time.Duration `mapstructure:"replica_stale_after"`
	// PublicURL is the base URL devices and agents reach the server at; it goes into enrollment
	// profiles. Empty: https://localhost:<port>.
	PublicURL string `mapstructure:"public_url"`
	// Names are extra DNS names or IP addresses for the server's TLS certificate, beyond
	// localhost, 127.0.0.1, ::1, the listen host and the public URL's host.
	Names []string `mapstructure:"names"`
	// MasterKey is the master key itself (64 hex digits or base64), normally from
	// HALE_MASTER_KEY. MasterKeyFile is a file holding it. With neither, DATA/master.key is
	// read, or created on a fresh install only: beside existing data, a missing key is an error.
	MasterKey     string `mapstructure:"master_key" secret:"true"`
	MasterKeyFile string `mapstructure:"master_key_file"`
	// APNsURL is the base URL of Apple's push service. Empty: Apple production.
	APNsURL string `mapstructure:"apns_url"`
	// APNsCAFile is a PEM bundle to trust for APNsURL instead of the system roots (tests, proxies).
	APNsCAFile string `mapstructure:"apns_ca_file"`
	// APNsConcurrency is how many APNs pushes a policy change or posture refresh keeps in flight
	// at once (HTTP/2 streams; Go opens another connection when the service's per-connection
	// stream limit is reached). Each device is pushed once however many commands wait for it.
	// 0: the default, 200.
	APNsConcurrency int `mapstructure:"apns_concurrency"`
	// MDMCAFile is a PEM bundle of extra CAs whose client certificates may check in at /mdm, for
	// devices whose identity was issued outside Hale. Hale's own CA is always trusted.
	MDMCAFile string `mapstructure:"mdm_ca_file"`
	// SSFCAFile is a PEM bundle to trust, instead of the system roots, for the HTTPS receivers
	// Security Event Tokens are pushed to (backends with certificates from a private CA).
	SSFCAFile string `mapstructure:"ssf_ca_file"`
	// SSFAllowedDestinations are the non-public destinations push receivers may be at anyway:
	// CIDR prefixes or addresses (any port), or host:port (a name is allowed whatever it
	// resolves to). Without an entry, delivery connects only to public addresses that are not
	// this machine's, checked at connect time.
	SSFAllowedDestinations []string `mapstructure:"ssf_allowed_destinations"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish on SIGTERM.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// MaxBodyBytes bounds every request body except where a route sets its own limit.
	MaxBodyBytes int64 `mapstructure:"max_body_bytes"`
	// EnrollRate and EnrollBurst limit enrollment attempts per source address (per second, and
	// the burst allowed before the rate applies), to slow token guessing. Raise them for a
	// mass rollout where many devices enroll from behind one NAT address.
	EnrollRate  float64 `mapstructure:"enroll_rate"`
	EnrollBurst int     `mapstructure:"enroll_burst"`
	// PostureTokenTTL is how long a posture token from POST /access/v1/token is valid. Short:
	// the token proves posture at issue time, and the backend learns of changes by events.
	PostureTokenTTL time.Duration `mapstructure:"posture_token_ttl"`
	// TwoPersonWipeGroups are the device groups whose wipes, full (Apple) and selective (agents)
	// alike, need a second person's approval (POST /api/v1/approvals/{id}, with a security token
	// of a person other than the requester, who neither created nor was created by the
	// requester's token) before the wipe is sent; "*" means every group. Lock and lost mode are
	// never held. Empty: a security token wipes alone.
	TwoPersonWipeGroups []string `mapstructure:"two_person_wipe_groups"`
	// ApprovalTTL is how long a wipe request waits for its second approver before it expires.
	ApprovalTTL time.Duration `mapstructure:"approval_ttl"`
	// CommandTTL is how long an MDM command may wait for its device before it expires and
	// leaves the queue. Lock, lost mode and erase never expire: a lost device that checks in
	// months later must still get them.
	CommandTTL time.Duration `mapstructure:"command_ttl"`
	// ConsoleIdleTimeout signs a web console session out after this long without a request
	// (HIPAA's automatic logoff; default 15m). ConsoleSessionLifetime ends any session this
	// long after sign-in (default 12h).
	ConsoleIdleTimeout     time.Duration `mapstructure:"console_idle_timeout"`
	ConsoleSessionLifetime time.Duration `mapstructure:"console_session_lifetime"`
	// ConsoleOIDC signs people in to the web console through the organisation's OpenID
	// Connect provider, its groups mapped to roles (console.OIDCConfig); empty issuer: API
	// tokens only.
	ConsoleOIDC console.OIDCConfig `mapstructure:"console_oidc"`

	// The organisation's messaging app (POST /app/v1/...): on iOS its App ID (AppIOSTeamID "."
	// AppIOSBundleID) and App Attest environment ("production" or "development", as its
	// entitlement says); on Android its package, the Play Console's response keys ("Manage
	// response encryption": the base64 AES decryption key and the base64 EC verification key)
	// and the SHA-256 digests of its signing certificates (base64url or hex). A platform left
	// empty refuses app registrations from it.
	AppIOSTeamID          string   `mapstructure:"app_ios_team_id"`
	AppIOSBundleID        string   `mapstructure:"app_ios_bundle_id"`
	AppIOSEnvironment     string   `mapstructure:"app_ios_environment"`
	AppAndroidPackage     string   `mapstructure:"app_android_package"`
	AppAndroidDecryptKey  string   `mapstructure:"app_android_decryption_key" secret:"true"`
	AppAndroidVerifyKey   string   `mapstructure:"app_android_verification_key" secret:"true"`
	AppAndroidCertDigests []string `mapstructure:"app_android_certificate_digests"`
	// AppIOSRootsFile is a PEM bundle of App Attest roots to trust instead of Apple's App
	// Attestation Root CA: for tests with a simulated Apple, never for production.
	AppIOSRootsFile string `mapstructure:"app_ios_roots_file"`
	// AppleDDM serves declarative device management to the Apple devices whose OS runs every
	// declaration Hale renders (iOS and iPadOS 17, macOS 14 and later): their policy arrives as
	// declarations and their posture as status reports the moment it changes. Older devices,
	// and every device while it is off, get configuration profiles and posture queries.
	AppleDDM bool `mapstructure:"apple_ddm"`
	// AndroidAPIURL is the Android Management API's base URL. Empty: Google's.
	AndroidAPIURL string `mapstructure:"android_api_url"`
	// AndroidPushAudience is the audience the enterprise's Pub/Sub push subscription puts in
	// its ID tokens. Empty: the push endpoint's URL, PublicURL + /android/pubsub.
	AndroidPushAudience string `mapstructure:"android_push_audience"`
	// AndroidPushServiceAccount is the service account the push subscription authenticates
	// as; pushes signed for any other are refused. Empty: any Google-signed account.
	AndroidPushServiceAccount string `mapstructure:"android_push_service_account"`
	// AndroidGoogleKeysURL is where Google's ID token signing keys are read. Empty: Google's.
	AndroidGoogleKeysURL string `mapstructure:"android_google_keys_url"`
	// AuditSinks are where every audit entry is streamed for the SIEM (configuration file only).
	AuditSinks []AuditSink `mapstructure:"audit_sinks"`
	// AuditSinkAlertLag is how many undelivered entries make a sink's lag an error log line.
	AuditSinkAlertLag int64 `mapstructure:"audit_sink_alert_lag"`
	// AndroidReconcileInterval is how often every Android device is read from the API to catch
	// missed notifications (and once at start).
	AndroidReconcileInterval time.Duration `mapstructure:"android_reconcile_interval"`

	// HelpDeskName, HelpDeskPhone, HelpDeskEmail and HelpDeskURL are whom a device's user is
	// told to call about what they cannot fix themselves (a wiped, lost or revoked device), in
	// the remediation of access answers and on the "my device" page.
	HelpDeskName  string `mapstructure:"help_desk_name"`
	HelpDeskPhone string `mapstructure:"help_desk_phone"`
	HelpDeskEmail string `mapstructure:"help_desk_email"`
	HelpDeskURL   string `mapstructure:"help_desk_url"`
}

// Defaults returns the configuration of `mdmserver` run with no flags.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8443",
		DataDir:         "./hale-data",
		LogLevel:        "info",
		ShutdownTimeout: 20 * time.Second,
		MaxBodyBytes:    1 << 20,
		PostureTokenTTL: 5 * time.Minute,
		EnrollRate:      1,
		EnrollBurst:     20,
		ApprovalTTL:     time.Hour,
		CommandTTL:      7 * 24 * time.Hour,
		// The console's automatic logoff (HIPAA) and its sessions' absolute lifetime.
		ConsoleIdleTimeout:     15 * time.Minute,
		ConsoleSessionLifetime: 12 * time.Hour,

		Role:                     RolePrimary,
		ReplicaStaleAfter:        5 * time.Second,
		AndroidReconcileInterval: time.Hour,
		AuditSinkAlertLag:        10000,
		APNsConcurrency:          commands.DefaultPushConcurrency,
	}
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("listen %q: want host:port: %w", c.Listen, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data: a data directory is required"))
	}
	if c.Database != "" {
		if u, err := url.Parse(c.Database); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, errors.New("database: want a postgres:// URL"))
		}
	}
	switch c.Role {
	case "":
		c.Role = RolePrimary
	case RolePrimary:
	case RoleAccess:
		if c.Database == "" {
			errs = append(errs, errors.New("role: an access replica needs the primary's PostgreSQL database (database)"))
		}
	default:
		errs = append(errs, fmt.Errorf("role %q: want primary or access", c.Role))
	}
	if c.ReplicaStaleAfter <= 0 {
		c.ReplicaStaleAfter = Defaults().ReplicaStaleAfter
	}
	if c.PublicURL == "" && err == nil {
		if host == "" || host == "0.0.0.0" || host == "::" || host == "127.0.0.1" {
			host = "localhost"
		}
		c.PublicURL = "https://" + net.JoinHostPort(host, port)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("public_url %q: want an https URL", c.PublicURL))
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = Defaults().ShutdownTimeout
	}
	switch {
	case c.APNsConcurrency == 0:
		c.APNsConcurrency = commands.DefaultPushConcurrency
	case c.APNsConcurrency < 1 || c.APNsConcurrency > 10000:
		errs = append(errs, fmt.Errorf("apns_concurrency %d: want 1 to 10000", c.APNsConcurrency))
	}
	if err := validateAuditSinks(c.AuditSinks); err != nil {
		errs = append(errs, err)
	}
	if c.AuditSinkAlertLag <= 0 {
		c.AuditSinkAlertLag = Defaults().AuditSinkAlertLag
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = Defaults().MaxBodyBytes
	}
	if c.EnrollRate <= 0 || c.EnrollBurst <= 0 {
		errs = append(errs, fmt.Errorf("enroll_rate %g and enroll_burst %d: both must be positive", c.EnrollRate, c.EnrollBurst))
	}
	switch {
	case c.PostureTokenTTL == 0:
		c.PostureTokenTTL = Defaults().PostureTokenTTL
	case c.PostureTokenTTL < 30*time.Second || c.PostureTokenTTL > posture.MaxTokenLifetime:
		// Verifiers refuse longer-lived tokens: they remember revocations only that long.
		errs = append(errs, fmt.Errorf("posture_token_ttl %s: want 30s to %s", c.PostureTokenTTL, posture.MaxTokenLifetime))
	}
	switch {
	case c.ApprovalTTL == 0:
		c.ApprovalTTL = Defaults().ApprovalTTL
	case c.ApprovalTTL < time.Minute || c.ApprovalTTL > 7*24*time.Hour:
		errs = append(errs, fmt.Errorf("approval_ttl %s: want 1m to 168h", c.ApprovalTTL))
	}
	switch {
	case c.CommandTTL == 0:
		c.CommandTTL = Defaults().CommandTTL
	case c.CommandTTL < time.Hour || c.CommandTTL > 365*24*time.Hour:
		errs = append(errs, fmt.Errorf("command_ttl %s: want 1h to 8760h", c.CommandTTL))
	}
	switch {
	case c.AndroidReconcileInterval == 0:
		c.AndroidReconcileInterval = Defaults().AndroidReconcileInterval
	case c.AndroidReconcileInterval < time.Minute:
		errs = append(errs, fmt.Errorf("android_reconcile_interval %s: want at least 1m", c.AndroidReconcileInterval))
	}
	for opt, s := range map[string]string{"android_api_url": c.AndroidAPIURL, "android_google_keys_url": c.AndroidGoogleKeysURL} {
		if u, err := url.Parse(s); s != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			errs = append(errs, fmt.Errorf("%s %q: want an https URL", opt, s))
		}
	}
	if _, err := events.ParseAllowList(c.SSFAllowedDestinations); err != nil {
		errs = append(errs, fmt.Errorf("ssf_allowed_destinations: %w", err))
	}
	if _, _, err := c.appVerifiers(); err != nil {
		errs = append(errs, err)
	}
	for opt, s := range map[string]string{"help_desk_name": c.HelpDeskName, "help_desk_phone": c.HelpDeskPhone,
		"help_desk_email": c.HelpDeskEmail, "help_desk_url": c.HelpDeskURL} {
		if len(s) > 256 {
			errs = append(errs, fmt.Errorf("%s: at most 256 characters", opt))
		}
	}
	for _, g := range c.TwoPersonWipeGroups {
		if g == "" || len(g) > 256 {
			errs = append(errs, fmt.Errorf("two_person_wipe_groups: %q is not a group name", g))
		}
	}
	return errors.Join(errs...)
}

// needsApproval reports whether a wipe (any mode) of a device in group needs a second approver.
func (c *Config) needsApproval(group string) bool {
	return slices.Contains(c.TwoPersonWipeGroups, "*") || slices.Contains(c.TwoPersonWipeGroups, group)
}

func (c *Config) path(name string) string { return filepath.Join(c.DataDir, name) }

// Redacted returns the configuration by option name, as the configuration file names them,
// with every secret (fields tagged secret:"true") replaced by "[redacted]" when set: what an
// auditor may see of how the server runs (GET /api/v1/config).
func (c Config) Redacted() map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := f.Tag.Get("mapstructure")
		if name == "" {
			continue
		}
		val := v.Field(i).Interface()
		if f.Tag.Get("secret") == "true" && !v.Field(i).IsZero() {
			val = "[redacted]"
		}
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		out[name] = val
	}
	return out
}

// helpDesk is the configured help desk, as remediation names it.
func (c *Config) helpDesk() remediation.HelpDesk {
	return remediation.HelpDesk{Name: c.HelpDeskName, Phone: c.HelpDeskPhone, Email: c.HelpDeskEmail, URL: c.HelpDeskURL}
}
