package applesim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	nanohttp "github.com/micromdm/nanomdm/http"
	"github.com/micromdm/nanomdm/test"
	"github.com/micromdm/nanomdm/test/enrollment"
	"github.com/micromdm/nanomdm/test/protocol"

	"github.com/halemdm/hale/internal/randid"
)

// DefaultTopic is the APNs topic a device enrolls with unless
// [WithTopic] says otherwise. The server's push certificate must carry
// the same topic for pushes to reach the device.
const DefaultTopic = "com.apple.mgmt.External.hale-applesim"

// Limits on what the device accepts from a server.
const (
	// MaxResponseSize bounds one server response (a command).
	MaxResponseSize = MaxProfileSize + 1<<20
	// MaxCommandsPerPoll bounds the commands one Poll runs, so that a
	// server that never runs dry cannot keep a test spinning.
	MaxCommandsPerPoll = 1000
)

// Errors a device returns.
var (
	// ErrErased is returned once the device has acknowledged
	// EraseDevice: an erased device no longer talks to the server.
	ErrErased = errors.New("applesim: device was erased and no longer talks to the MDM server")
	// ErrUnenrolled is returned once a user enrollment was ended by the
	// removal of its enrollment profile: the device no longer talks to
	// the server.
	ErrUnenrolled = errors.New("applesim: the enrollment was removed; the device no longer talks to the MDM server")
	// ErrTooManyCommands is returned when one Poll would run more than
	// MaxCommandsPerPoll commands.
	ErrTooManyCommands = errors.New("applesim: server kept sending commands past MaxCommandsPerPoll")
)

// HTTPError is the error for a non-200 answer from the MDM server; it
// carries the status and the first 10 KiB of the body.
type HTTPError = enrollment.HTTPError

// CommandRecord is one command the device handled.
type CommandRecord struct {
	CommandUUID string
	RequestType string
	// Status is what the device reported: Acknowledged, Error, NotNow
	// or CommandFormatError.
	Status     string
	ErrorChain []ErrorChainItem
	// Response is the property list the device sent back.
	Response []byte
	Time     time.Time
}

// ErrorChainItem is one entry of a result's ErrorChain.
type ErrorChainItem struct {
	ErrorCode            int
	ErrorDomain          string
	LocalizedDescription string
	USEnglishDescription string
}

// Device is a simulated Apple device enrolled (or to be enrolled) in
// one MDM server. Its methods are safe for concurrent use; MDM
// exchanges (Enroll, Poll, Checkout) run one at a time, as a device
// keeps one MDM connection.
type Device struct {
	serverURL  string
	checkInURL string
	client     *http.Client
	topic      string
	udid       string
	serial     string
	cert       *x509.Certificate
	key        crypto.PrivateKey
	sign       bool
	logger     *slog.Logger

	pushToken   []byte
	pushMagic   string
	unlockToken []byte

	transport *protocol.Transport

	// connMu serialises MDM exchanges.
	connMu sync.Mutex

	mu       sync.Mutex
	state    State
	history  []CommandRecord
	enrolled bool
	// changed is closed (and replaced) whenever state, history or
	// enrolled change, waking WaitFor.
	changed chan struct{}

	// A user enrollment (account-driven, personal device) identifies
	// itself by an EnrollmentID, never its UDID or serial; its MDM
	// profile's identifier is what the server removes to end it.
	userEnrollment bool
	enrollmentID   string
	managedAppleID string
	mdmProfileID   string
	// unenrollAfter: the current poll removed the enrollment profile.
	unenrollAfter bool

	// Declarative management: a sync is due after the current poll;
	// lastStatus holds the status item values last reported, and
	// statusReports every report sent.
	syncPending   bool
	lastStatus    map[string]any
	statusReports [][]byte
}

// Option configures a [Device].
type Option func(*Device)

// WithHTTPClient sets the client used to reach the server, typically
// to trust the server's TLS certificate (default: a plain client with a
// one-minute timeout). When the device authenticates
// with its TLS client certificate ([WithSignMessage](false)) a copy of
// the client is made that presents it; its Transport must then be an
// *http.Transport (or nil).
func WithHTTPClient(c *http.Client) Option {
	return func(d *Device) { d.client = c }
}

// WithCheckInURL sets a separate CheckInURL, as the MDM payload may.
// Without it, check-ins go to the server URL.
func WithCheckInURL(u string) Option {
	return func(d *Device) { d.checkInURL = u }
}

// WithTopic sets the APNs topic (default [DefaultTopic]).
func WithTopic(topic string) Option {
	return func(d *Device) { d.topic = topic }
}

// WithSerialNumber sets the serial number (default random).
func WithSerialNumber(serial string) Option {
	return func(d *Device) { d.serial = serial }
}

// WithUDID sets the UDID, which nanomdm uses as the enrollment ID
// (default random).
func WithUDID(udid string) Option {
	return func(d *Device) { d.udid = udid }
}

// WithIdentity sets the device identity certificate and key, e.g. one
// obtained through SCEP. Without it, a random self-signed RSA identity
// is generated, which a server that verifies identities against its CA
// will refuse.
func WithIdentity(cert *x509.Certificate, key crypto.PrivateKey) Option {
	return func(d *Device) { d.cert, d.key = cert, key }
}

// WithSignMessage chooses how the device proves its identity: true
// (the default) signs every request body into an Mdm-Signature header;
// false presents the identity as the TLS client certificate, which
// needs an https server URL.
func WithSignMessage(sign bool) Option {
	return func(d *Device) { d.sign = sign }
}

// WithState sets the initial state, replacing the default
// ([IOSState]); start from IOSState or MacOSState.
func WithState(s State) Option {
	return func(d *Device) { d.state = s.clone() }
}

// WithLogger sets the logger for the device's exchanges.
func WithLogger(logger *slog.Logger) Option {
	return func(d *Device) {
		if logger != nil {
			d.logger = logger
		}
	}
}

// New creates a device that talks to the MDM server at serverURL (the
// MDM payload's ServerURL). It does not contact the server: call
// [Device.Enroll].
func New(serverURL string, opts ...Option) (*Device, error) {
	if serverURL == "" {
		return nil, errors.New("applesim: empty server URL: pass the MDM ServerURL")
	}
	d := &Device{
		serverURL: serverURL,
		topic:     DefaultTopic,
		sign:      true,
		logger:    slog.New(slog.DiscardHandler),
		state:     IOSState(),
		changed:   make(chan struct{}),
	}
	for _, opt := range opts {
		opt(d)
	}
	if d.udid == "" {
		d.udid = strings.ToUpper(randid.Hex(20))
	}
	if d.serial == "" {
		d.serial = strings.ToUpper(randid.Hex(6))
	}
	if (d.cert == nil) != (d.key == nil) {
		return nil, errors.New("applesim: WithIdentity needs both a certificate and its key")
	}
	if d.cert == nil {
		key, cert, err := test.SimpleSelfSignedRSAKeypair(d.udid, 2)
		if err != nil {
			return nil, fmt.Errorf("applesim: generating device identity: %w", err)
		}
		d.key, d.cert = key, cert
	}
	d.pushToken = randid.Bytes(32)
	d.pushMagic = randid.UUID()
	if d.state.platform() == IOS {
		d.unlockToken = randid.Bytes(32)
	}

	client := d.client
	if client == nil {
		client = &http.Client{Timeout: time.Minute}
	}
	if !d.sign {
		tc := &tls.Certificate{Certificate: [][]byte{d.cert.Raw}, PrivateKey: d.key, Leaf: d.cert}
		var err error
		if client, err = nanohttp.ClientWithCert(client, tc); err != nil {
			return nil, fmt.Errorf("applesim: setting the TLS client certificate: %w", err)
		}
	}
	topts := []protocol.TransportOption{
		protocol.WithClient(client),
		protocol.WithMDMURLs(d.serverURL, d.checkInURL),
		protocol.WithIdentityProvider(func(context.Context) (*x509.Certificate, crypto.PrivateKey, error) {
			return d.cert, d.key, nil
		}),
	}
	if d.sign {
		topts = append(topts, protocol.WithSignMessage())
	}
	d.client = client // legacy profiles are downloaded with it
	d.transport = protocol.NewTransport(topts...)
	d.logger = d.logger.With("udid", d.udid)
	return d, nil
}

// Key returns the private key of the device's identity certificate.
func (d *Device) Key() crypto.PrivateKey { return d.key }

// UDID returns the device's UDID (its nanomdm enrollment ID).
func (d *Device) UDID() string { return d.udid }

// SerialNumber returns the device's serial number.
func (d *Device) SerialNumber() string { return d.serial }

// Topic returns the APNs topic the device enrolls with.
func (d *Device) Topic() string { return d.topic }

// PushToken returns the device's APNs token as lower-case hex, the form
// in APNs URLs.
func (d *Device) PushToken() string { return hex.EncodeToString(d.pushToken) }

// PushMagic returns the push magic the server must send in pushes.
func (d *Device) PushMagic() string { return d.pushMagic }

// UnlockToken returns the unlock token sent in TokenUpdate (iOS only;
// nil for macOS). ClearPasscode must carry it.
func (d *Device) UnlockToken() []byte { return bytes.Clone(d.unlockToken) }

// Certificate returns the device identity certificate.
func (d *Device) Certificate() *x509.Certificate { return d.cert }

// Enrolled reports whether Enroll succeeded and the device has not
// since checked out or been disowned by the server (401, or 403 with
// com.apple.unrecognized.device, after which real devices unenroll).
func (d *Device) Enrolled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.enrolled
}

// State returns a deep copy of the device's state.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.clone()
}

// Update changes the device's state under its lock, as the user or the
// OS would between MDM exchanges (set a passcode, turn FileVault off).
func (d *Device) Update(fn func(*State)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(&d.state)
	d.notifyLocked()
}

// WaitFor blocks until cond holds for the device's state and command
// history (both copies), or ctx ends. It re-checks after every change,
// so a test can wait for the effect of a command the server sends
// through the push loop: dev.WaitFor(ctx, func(s State, _ []CommandRecord) bool { return s.Locked }).
func (d *Device) WaitFor(ctx context.Context, cond func(State, []CommandRecord) bool) error {
	for {
		d.mu.Lock()
		ok := cond(d.state.clone(), d.commandsLocked())
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("applesim: waiting for device state: %w", ctx.Err())
		case <-ch:
		}
	}
}

// notifyLocked wakes WaitFor callers; d.mu is held.
func (d *Device) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Commands returns the commands the device has handled, oldest first.
func (d *Device) Commands() []CommandRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.commandsLocked()
}

func (d *Device) commandsLocked() []CommandRecord {
	out := slices.Clone(d.history)
	for i := range out {
		out[i].ErrorChain = slices.Clone(out[i].ErrorChain)
		out[i].Response = bytes.Clone(out[i].Response)
	}
	return out
}

// Enroll sends the Authenticate and TokenUpdate check-ins, as a device
// does when it installs the enrollment profile.
func (d *Device) Enroll(ctx context.Context) error {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if err := d.checkErased(); err != nil {
		return err
	}
	st := d.State()
	auth := map[string]any{
		"MessageType":  "Authenticate",
		"Topic":        d.topic,
		"SerialNumber": d.serial,
		"DeviceName":   st.DeviceName,
		"OSVersion":    st.OSVersion,
		"BuildVersion": st.BuildVersion,
		"ProductName":  st.ProductName,
		"Model":        st.Model,
		"ModelName":    st.ModelName,
	}
	d.ident(auth)
	if d.userEnrollment {
		delete(auth, "SerialNumber") // a user enrollment does not reveal the hardware
	}
	if err := d.checkin(ctx, auth); err != nil {
		return fmt.Errorf("applesim: Authenticate check-in: %w", err)
	}
	tu := map[string]any{
		"MessageType":           "TokenUpdate",
		"Topic":                 d.topic,
		"Token":                 d.pushToken,
		"PushMagic":             d.pushMagic,
		"AwaitingConfiguration": false,
	}
	d.ident(tu)
	if d.unlockToken != nil && !d.userEnrollment {
		tu["UnlockToken"] = d.unlockToken
	}
	if err := d.checkin(ctx, tu); err != nil {
		return fmt.Errorf("applesim: TokenUpdate check-in: %w", err)
	}
	d.mu.Lock()
	d.enrolled = true
	d.notifyLocked()
	d.mu.Unlock()
	d.logger.Debug("enrolled", "topic", d.topic)
	return nil
}

// Checkout sends the CheckOut check-in, as a device does when its MDM
// profile is removed. The device is no longer enrolled afterwards.
func (d *Device) Checkout(ctx context.Context) error {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if err := d.checkErased(); err != nil {
		return err
	}
	msg := d.ident(map[string]any{"MessageType": "CheckOut", "Topic": d.topic})
	if err := d.checkin(ctx, msg); err != nil {
		return fmt.Errorf("applesim: CheckOut check-in: %w", err)
	}
	d.mu.Lock()
	d.enrolled = false
	d.notifyLocked()
	d.mu.Unlock()
	return nil
}

// Poll connects to the server as a device does after a push: it
// reports Idle, runs every command the server answers with and reports
// each result, until the server answers with an empty body. It returns
// how many commands it ran. After acknowledging EraseDevice the device
// erases itself and Poll returns [ErrErased] (so does every later
// call).
func (d *Device) Poll(ctx context.Context) (int, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if err := d.checkErased(); err != nil {
		return 0, err
	}
	report, err := encodePlist(d.ident(map[string]any{"Status": StatusIdle}))
	if err != nil {
		return 0, err
	}
	what := StatusIdle
	n := 0
	eraseAfter := false
	for {
		body, err := d.exchange(ctx, report, false)
		d.mu.Lock()
		unenroll := d.unenrollAfter
		d.mu.Unlock()
		if unenroll {
			return n, d.endUserEnrollment(ctx)
		}
		if eraseAfter {
			// The device wipes itself right after sending its
			// acknowledgement, does not retry it, and never reads
			// what the server answered.
			d.Update(eraseState)
			d.logger.Info("erased")
			if err != nil {
				return n, errors.Join(ErrErased, fmt.Errorf("applesim: reporting %s: %w", what, err))
			}
			return n, ErrErased
		}
		if err != nil {
			return n, fmt.Errorf("applesim: reporting %s: %w", what, err)
		}
		if len(bytes.TrimSpace(body)) == 0 {
			d.mu.Lock()
			sync := d.syncPending
			d.mu.Unlock()
			if sync {
				// A DeclarativeManagement command came in this poll: sync now.
				if err := d.syncLocked(ctx); err != nil {
					return n, err
				}
			}
			return n, nil
		}
		if n >= MaxCommandsPerPoll {
			return n, ErrTooManyCommands
		}
		var rec CommandRecord
		rec, eraseAfter, err = d.handle(body)
		if err != nil {
			return n, err
		}
		report = rec.Response
		what = rec.Status + " for " + rec.RequestType + " " + rec.CommandUUID
		n++
	}
}

func (d *Device) checkErased() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state.Erased {
		return ErrErased
	}
	if d.userEnrollment && d.mdmProfileID == "" {
		return ErrUnenrolled
	}
	return nil
}

// checkin encodes and sends a check-in message.
func (d *Device) checkin(ctx context.Context, msg map[string]any) error {
	body, err := encodePlist(msg)
	if err != nil {
		return err
	}
	_, err = d.exchange(ctx, body, true)
	return err
}

// exchange sends body (a check-in if checkin, else a command report)
// and returns the 200 response body.
func (d *Device) exchange(ctx context.Context, body []byte, checkin bool) ([]byte, error) {
	var (
		resp *http.Response
		err  error
	)
	if checkin {
		resp, err = d.transport.DoCheckIn(ctx, bytes.NewReader(body))
	} else {
		resp, err = d.transport.DoReportResultsAndFetchNext(ctx, bytes.NewReader(body))
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := enrollment.HTTPErrors(resp)
		var he *HTTPError
		if errors.As(err, &he) && unenrolls(he) {
			d.mu.Lock()
			d.enrolled = false
			d.notifyLocked()
			d.mu.Unlock()
			d.logger.Info("server disowned the device: unenrolled", "status", he.StatusCode)
		}
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if len(out) > MaxResponseSize {
		return nil, fmt.Errorf("response is larger than %d bytes", MaxResponseSize)
	}
	return out, nil
}

// unenrolls reports whether an answer makes a real device remove its
// MDM enrollment: 401, or 403 with Apple's unrecognized-device error.
func unenrolls(he *HTTPError) bool {
	return he.StatusCode == http.StatusUnauthorized ||
		(he.StatusCode == http.StatusForbidden && bytes.Contains(he.Body, []byte("com.apple.unrecognized.device")))
}
