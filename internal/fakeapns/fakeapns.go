// Package fakeapns is a fake Apple Push Notification service (APNs)
// provider API for tests.
//
// The fake speaks the real protocol: HTTP/2 over TLS, POST
// /3/device/{token} with the apns-* headers and a JSON body such as
// {"mdm":"<push magic>"}, answered with 200 and an apns-id header or
// with an APNs-style JSON error ({"reason":"BadDeviceToken"}). It records
// every accepted push and lets a simulated device subscribe to the
// pushes for its token, so a test can drive the whole "enqueue, push,
// device polls" loop of Apple MDM without Apple.
//
// nanomdm's push/nanopush provider hard-codes Apple's URL; use
// [Server.NewClient] with nanopush.WithNewClient, which presents the
// push certificate, trusts the fake and rewrites Apple's hosts to it
// (through mdmserver/apns, the transport Hale itself uses).
package fakeapns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/randid"
	"github.com/micromdm/nanomdm/cryptoutil"
)

// Limits of the APNs provider API that the fake enforces.
const (
	// MaxPayloadSize is the largest request body APNs accepts for a
	// regular (and MDM) notification.
	MaxPayloadSize = 4096
	// maxTokenHexLen bounds the device token in the path. Real tokens
	// are 32 bytes; nanomdm's test enrollments use longer ones.
	maxTokenHexLen = 512
	// subscriberBuffer is how many pushes a subscriber may lag behind
	// before further pushes are dropped for it.
	subscriberBuffer = 16
)

// APNs error reasons the fake answers with. The names are Apple's.
const (
	ReasonBadDeviceToken       = "BadDeviceToken"
	ReasonBadExpirationDate    = "BadExpirationDate"
	ReasonBadMessageID         = "BadMessageId"
	ReasonBadPriority          = "BadPriority"
	ReasonBadCertificate       = "BadCertificate"
	ReasonBadPath              = "BadPath"
	ReasonInvalidPushType      = "InvalidPushType"
	ReasonMethodNotAllowed     = "MethodNotAllowed"
	ReasonMissingDeviceToken   = "MissingDeviceToken"
	ReasonMissingProviderToken = "MissingProviderToken"
	ReasonMissingTopic         = "MissingTopic"
	ReasonPayloadEmpty         = "PayloadEmpty"
	ReasonPayloadTooLarge      = "PayloadTooLarge"
	ReasonTopicDisallowed      = "TopicDisallowed"
	ReasonUnregistered         = "Unregistered"
	// ReasonBadPayload is not an Apple reason: APNs does not document
	// its answer to a body that is not JSON. The fake uses 400 with it.
	ReasonBadPayload = "BadPayload"
)

// validPushTypes are the documented apns-push-type values.
var validPushTypes = map[string]bool{
	"alert": true, "background": true, "location": true, "voip": true,
	"complication": true, "fileprovider": true, "mdm": true,
	"liveactivity": true, "pushtotalk": true, "widgets": true, "controls": true,
}

// Push is one notification the fake accepted.
type Push struct {
	// ID is the apns-id the fake answered with.
	ID string
	// Token is the device token from the URL path, lower-case hex.
	Token string
	// Topic is the apns-topic header or, when absent, the topic of the
	// client (push) certificate, as APNs derives it.
	Topic string
	// PushMagic is the "mdm" value of the JSON body (empty for a
	// non-MDM notification).
	PushMagic string
	// PushType, Expiration and Priority are the raw apns-push-type,
	// apns-expiration and apns-priority headers.
	PushType   string
	Expiration string
	Priority   string
	// Body is the request body as received.
	Body []byte
	// Time is when the fake accepted the push.
	Time time.Time
}

type apnsError struct {
	status int
	reason string
}

// Server is a running fake APNs provider API. Its methods are safe for
// concurrent use. Close it when done.
type Server struct {
	ts      *httptest.Server
	topic   string
	logger  *slog.Logger
	latency time.Duration

	mu          sync.Mutex
	pushes      []Push
	tokenErrors map[string]apnsError
	subs        map[string]map[chan Push]struct{}
	closed      bool
}

// Option configures a [Server].
type Option func(*Server)

// WithTopic makes the fake accept only pushes for topic: a push
// certificate for another topic is refused with 403 BadCertificate and
// an apns-topic header naming another topic with 400 TopicDisallowed.
// Without it, any topic is accepted.
func WithTopic(topic string) Option {
	return func(s *Server) { s.topic = topic }
}

// WithLogger sets the logger for the pushes and refusals of the fake.
func WithLogger(logger *slog.Logger) Option {
	return func(s *Server) {
		if logger != nil {
			s.logger = logger
		}
	}
}

// WithLatency makes the fake wait d before it answers each push, as Apple's service across the
// internet does (tens of milliseconds): a push rate measured against it counts the round trips
// a real deployment waits for.
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// New starts a fake APNs server on a local port with HTTP/2 over TLS.
// It asks for (and does not verify) a client certificate, as APNs
// certificate-based authentication does; a request without a client
// certificate and without an authorization header is refused with 403
// MissingProviderToken. Provider JWTs are not verified.
func New(opts ...Option) *Server {
	s := &Server{
		logger:      slog.New(slog.DiscardHandler),
		tokenErrors: make(map[string]apnsError),
		subs:        make(map[string]map[chan Push]struct{}),
	}
	for _, opt := range opts {
		opt(s)
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.ts.EnableHTTP2 = true
	s.ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	s.ts.StartTLS()
	return s
}

// Close shuts the server down and closes every subscription channel.
func (s *Server) Close() {
	s.ts.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for token, set := range s.subs {
		for ch := range set {
			close(ch)
		}
		delete(s.subs, token)
	}
}

// URL returns the base URL of the fake, e.g. https://127.0.0.1:41234.
func (s *Server) URL() string { return s.ts.URL }

// Certificate returns the fake's TLS server certificate.
func (s *Server) Certificate() *x509.Certificate { return s.ts.Certificate() }

// CertPool returns a pool that trusts the fake's TLS certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.ts.Certificate())
	return pool
}

// Client returns an HTTP/2 client that trusts the fake and sends
// requests for Apple's APNs hosts to it. It presents no client
// certificate: set an authorization header, or use [Server.NewClient].
func (s *Server) Client() *http.Client {
	c, _ := s.newClient(nil)
	return c
}

// NewClient builds an HTTP/2 client that presents cert as its TLS
// client certificate, trusts the fake, and sends requests for Apple's
// APNs hosts to the fake. Its signature is nanopush.NewClient's, so
// nanopush.NewFactory(nanopush.WithNewClient(srv.NewClient)) pushes to
// the fake.
func (s *Server) NewClient(cert *tls.Certificate) (*http.Client, error) {
	if cert == nil {
		return nil, fmt.Errorf("fakeapns: nil push certificate: pass the APNs push certificate and key")
	}
	return s.newClient(cert)
}

// newClient builds a client that dials the fake whatever host a request names (Apple's APNs
// hosts included), so a push provider aimed at Apple reaches the fake unchanged. It does this by
// itself rather than with Hale's rewriting transport: a test double must not share the code it
// stands in for.
func (s *Server) newClient(cert *tls.Certificate) (*http.Client, error) {
	addr := s.ts.Listener.Addr().String()
	cfg := &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12,
		ServerName: "example.com"} // a name httptest's certificate carries
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// Pushes returns a copy of every push accepted so far, oldest first.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Push, len(s.pushes))
	for i, p := range s.pushes {
		out[i] = p.clone()
	}
	return out
}

// PushesFor returns a copy of the pushes accepted for token.
func (s *Server) PushesFor(token string) []Push {
	token = strings.ToLower(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Push
	for _, p := range s.pushes {
		if p.Token == token {
			out = append(out, p.clone())
		}
	}
	return out
}

// Subscribe returns a channel that receives every push accepted for
// token from now on, and a function that ends the subscription (and
// closes the channel). Delivery never blocks the fake: if the
// subscriber lags more than a few pushes behind, further pushes are
// dropped for it, which is harmless because an MDM push only means
// "poll now" and APNs coalesces them too. The channel is also closed
// by [Server.Close].
func (s *Server) Subscribe(token string) (<-chan Push, func()) {
	token = strings.ToLower(token)
	ch := make(chan Push, subscriberBuffer)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch, func() {}
	}
	if s.subs[token] == nil {
		s.subs[token] = make(map[chan Push]struct{})
	}
	s.subs[token][ch] = struct{}{}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, ok := s.subs[token][ch]; ok {
				delete(s.subs[token], ch)
				close(ch)
			}
		})
	}
}

// MarkUnregistered makes pushes to token fail with 410 Unregistered,
// as APNs answers for a token that is no longer valid (app removed,
// device wiped).
func (s *Server) MarkUnregistered(token string) {
	s.SetTokenError(token, http.StatusGone, ReasonUnregistered)
}

// SetTokenError makes pushes to token fail with status and reason
// (e.g. 429 TooManyRequests, 500 InternalServerError) until
// [Server.ClearTokenError].
func (s *Server) SetTokenError(token string, status int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenErrors[strings.ToLower(token)] = apnsError{status: status, reason: reason}
}

// ClearTokenError undoes [Server.SetTokenError] and
// [Server.MarkUnregistered] for token.
func (s *Server) ClearTokenError(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokenErrors, strings.ToLower(token))
}

func (p Push) clone() Push {
	p.Body = append([]byte(nil), p.Body...)
	return p
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.latency > 0 {
		select {
		case <-time.After(s.latency):
		case <-r.Context().Done():
			return
		}
	}
	id := r.Header.Get("apns-id")
	if id == "" {
		id = randid.UUID()
	} else if !validUUID(id) {
		s.fail(w, randid.UUID(), http.StatusBadRequest, ReasonBadMessageID)
		return
	}
	if r.ProtoMajor != 2 {
		// APNs only speaks HTTP/2; the TLS config already refuses
		// other ALPN protocols, this is the belt to those braces.
		http.Error(w, "APNs requires HTTP/2", http.StatusHTTPVersionNotSupported)
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, id, http.StatusMethodNotAllowed, ReasonMethodNotAllowed)
		return
	}
	const prefix = "/3/device/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		s.fail(w, id, http.StatusNotFound, ReasonBadPath)
		return
	}
	var certTopic string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certTopic, _ = cryptoutil.TopicFromCert(r.TLS.PeerCertificates[0])
	} else if r.Header.Get("authorization") == "" {
		s.fail(w, id, http.StatusForbidden, ReasonMissingProviderToken)
		return
	}
	token := strings.ToLower(strings.TrimPrefix(r.URL.Path, prefix))
	if token == "" {
		s.fail(w, id, http.StatusBadRequest, ReasonMissingDeviceToken)
		return
	}
	if len(token) > maxTokenHexLen || len(token)%2 != 0 {
		s.fail(w, id, http.StatusBadRequest, ReasonBadDeviceToken)
		return
	}
	if _, err := hex.DecodeString(token); err != nil {
		s.fail(w, id, http.StatusBadRequest, ReasonBadDeviceToken)
		return
	}
	pushType := r.Header.Get("apns-push-type")
	if pushType != "" && !validPushTypes[pushType] {
		s.fail(w, id, http.StatusBadRequest, ReasonInvalidPushType)
		return
	}
	expiration := r.Header.Get("apns-expiration")
	if expiration != "" {
		if _, err := strconv.ParseInt(expiration, 10, 64); err != nil {
			s.fail(w, id, http.StatusBadRequest, ReasonBadExpirationDate)
			return
		}
	}
	priority := r.Header.Get("apns-priority")
	if priority != "" && priority != "1" && priority != "5" && priority != "10" {
		s.fail(w, id, http.StatusBadRequest, ReasonBadPriority)
		return
	}
	if s.topic != "" && certTopic != "" && certTopic != s.topic {
		s.fail(w, id, http.StatusForbidden, ReasonBadCertificate)
		return
	}
	topic := r.Header.Get("apns-topic")
	if topic == "" {
		topic = certTopic
	}
	if s.topic != "" {
		if topic == "" {
			s.fail(w, id, http.StatusBadRequest, ReasonMissingTopic)
			return
		}
		if topic != s.topic {
			s.fail(w, id, http.StatusBadRequest, ReasonTopicDisallowed)
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPayloadSize+1))
	if err != nil {
		s.fail(w, id, http.StatusBadRequest, ReasonPayloadEmpty)
		return
	}
	if len(body) > MaxPayloadSize {
		s.fail(w, id, http.StatusRequestEntityTooLarge, ReasonPayloadTooLarge)
		return
	}
	if len(body) == 0 {
		s.fail(w, id, http.StatusBadRequest, ReasonPayloadEmpty)
		return
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(body, &payload); err != nil {
		s.fail(w, id, http.StatusBadRequest, ReasonBadPayload)
		return
	}
	var magic string
	if raw, ok := payload["mdm"]; ok {
		if err := json.Unmarshal(raw, &magic); err != nil || magic == "" {
			s.fail(w, id, http.StatusBadRequest, ReasonBadPayload)
			return
		}
	} else if _, ok := payload["aps"]; !ok {
		s.fail(w, id, http.StatusBadRequest, ReasonPayloadEmpty)
		return
	}

	s.mu.Lock()
	if e, ok := s.tokenErrors[token]; ok {
		s.mu.Unlock()
		s.fail(w, id, e.status, e.reason)
		return
	}
	p := Push{
		ID:         id,
		Token:      token,
		Topic:      topic,
		PushMagic:  magic,
		PushType:   pushType,
		Expiration: expiration,
		Priority:   priority,
		Body:       body,
		Time:       time.Now(),
	}
	s.pushes = append(s.pushes, p)
	for ch := range s.subs[token] {
		select {
		case ch <- p.clone():
		default:
		}
	}
	s.mu.Unlock()

	s.logger.Debug("push accepted", "apns_id", id, "token", token, "topic", topic)
	w.Header().Set("apns-id", id)
	w.WriteHeader(http.StatusOK)
}

// fail answers like APNs: the apns-id header and a JSON body with the
// reason, plus the time the token became invalid for 410.
func (s *Server) fail(w http.ResponseWriter, id string, status int, reason string) {
	s.logger.Debug("push refused", "apns_id", id, "status", status, "reason", reason)
	body := struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp,omitempty"`
	}{Reason: reason}
	if status == http.StatusGone {
		body.Timestamp = time.Now().UnixMilli()
	}
	w.Header().Set("apns-id", id)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// validUUID reports whether s has the 8-4-4-4-12 hex form APNs requires
// of a caller-chosen apns-id.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
