package posture

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"
)

// SETContentType is the media type of a pushed Security Event Token (RFC 8935 section 2).
const SETContentType = "application/secevent+jwt"

// Receiver limits.
const (
	maxSETBodyBytes = 64 << 10
	maxSeenJTIs     = 10_000
)

// Receiver is the http.Handler a Hale server pushes revocation events to (RFC 8935). It verifies
// each Security Event Token, then, per event, invalidates the Client's cached decisions, revokes
// the device's posture tokens in the Verifier when the event takes access away, and calls the
// OnEvent hook. A SET delivered twice (same jti) is acknowledged without being applied again.
type Receiver struct {
	keys     keyring
	audience string
	issuer   string
	authz    string
	onEvent  func(context.Context, SETClaims, string, CAEPEvent)
	client   *Client
	verifier *Verifier
	logger   *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	seen     map[string]struct{}
	seenRing []string // insertion order of seen, to forget the oldest
	next     int
}

// ReceiverOption configures a Receiver.
type ReceiverOption func(*Receiver)

// WithOnEvent calls fn for each event of each accepted SET, after the Client and Verifier were
// updated. eventType is the events key (EventComplianceChange, EventSessionRevoked, or another
// type, whose body then decodes best effort into CAEPEvent). fn runs before the transmitter gets
// its answer: keep it short.
func WithOnEvent(fn func(ctx context.Context, set SETClaims, eventType string, ev CAEPEvent)) ReceiverOption {
	return func(r *Receiver) { r.onEvent = fn }
}

// WithClient makes every event about a device drop that device's cached decisions in c.
func WithClient(c *Client) ReceiverOption { return func(r *Receiver) { r.client = c } }

// WithVerifier makes session-revoked events, and compliance changes to anything but
// "compliant", revoke the device's posture tokens issued up to the event's time.
func WithVerifier(v *Verifier) ReceiverOption { return func(r *Receiver) { r.verifier = v } }

// WithAuthorization requires every push to carry exactly this Authorization header value (the
// one configured for the stream on the server, such as "Bearer s3cret").
func WithAuthorization(headerValue string) ReceiverOption {
	return func(r *Receiver) { r.authz = headerValue }
}

// WithReceiverLogger logs refused pushes (default: slog.Default()).
func WithReceiverLogger(l *slog.Logger) ReceiverOption { return func(r *Receiver) { r.logger = l } }

// NewReceiver returns a Receiver for SETs signed by keys, issued by issuer (the server's SET
// issuer) for audience (this receiver's stream audience). Both must match exactly.
func NewReceiver(keys KeySource, audience, issuer string, opts ...ReceiverOption) *Receiver {
	r := &Receiver{
		keys: keyring{src: keys}, audience: audience, issuer: issuer, logger: slog.Default(),
		now: time.Now, seen: map[string]struct{}{}, seenRing: make([]string, maxSeenJTIs),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// setError is an RFC 8935 section 2.3 error answer.
type setError struct {
	status int
	code   string // invalid_request, invalid_key, invalid_issuer, invalid_audience, authentication_failed
	desc   string
}

func (e *setError) Error() string { return e.code + ": " + e.desc }

// ServeHTTP accepts one pushed SET: 202 when it was applied (or had been already), 400 with an
// RFC 8935 error otherwise, 503 when the signing keys cannot be had (the transmitter retries).
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: SETs are delivered with POST", http.StatusMethodNotAllowed)
		return
	}
	if r.authz != "" && subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), []byte(r.authz)) != 1 {
		r.fail(w, req, &setError{http.StatusBadRequest, "authentication_failed", "missing or wrong Authorization header"})
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != SETContentType {
		r.fail(w, req, &setError{http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be " + SETContentType})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxSETBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			r.fail(w, req, &setError{http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("SET larger than %d bytes", maxSETBodyBytes)})
			return
		}
		r.fail(w, req, &setError{http.StatusBadRequest, "invalid_request", "reading the body failed"})
		return
	}
	if err := r.Deliver(req.Context(), string(bytes.TrimSpace(body))); err != nil {
		var se *setError
		if !errors.As(err, &se) {
			se = &setError{http.StatusBadRequest, "invalid_request", err.Error()}
		}
		if se.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "30")
		}
		r.fail(w, req, se)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// Deliver verifies and applies one SET given in compact form, for SETs that arrive another way
// (an RFC 8936 poll). It returns nil for a SET already applied.
func (r *Receiver) Deliver(ctx context.Context, set string) error {
	payload, err := verifyJWS(ctx, &r.keys, set, SETType)
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return &setError{http.StatusServiceUnavailable, "invalid_key", "the receiver cannot fetch the signing keys now"}
	case errors.Is(err, ErrUnknownKey), errors.Is(err, ErrBadSignature):
		return &setError{http.StatusBadRequest, "invalid_key", err.Error()}
	case err != nil:
		return &setError{http.StatusBadRequest, "invalid_request", err.Error()}
	}
	var c SETClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return &setError{http.StatusBadRequest, "invalid_request", "claims: " + err.Error()}
	}
	if c.Issuer == "" || c.Issuer != r.issuer {
		return &setError{http.StatusBadRequest, "invalid_issuer", fmt.Sprintf("iss %q is not this receiver's issuer", truncate(c.Issuer, 128))}
	}
	if c.Audience == "" || c.Audience != r.audience {
		return &setError{http.StatusBadRequest, "invalid_audience", fmt.Sprintf("aud %q is not this receiver", truncate(c.Audience, 128))}
	}
	if c.ID == "" || len(c.ID) > 256 || len(c.Events) == 0 {
		return &setError{http.StatusBadRequest, "invalid_request", "a SET needs a jti and at least one event"}
	}
	events := make(map[string]CAEPEvent, len(c.Events))
	for typ, raw := range c.Events {
		var ev CAEPEvent
		err := json.Unmarshal(raw, &ev)
		if err != nil && (typ == EventComplianceChange || typ == EventSessionRevoked) {
			return &setError{http.StatusBadRequest, "invalid_request", fmt.Sprintf("event %s: %v", typ, err)}
		}
		events[typ] = ev
	}

	if !r.remember(c.ID) {
		return nil // applied before: RFC 8935 transmitters retry until they see a 202
	}
	// A SET about an app instance names its device too: revoking the device covers the
	// instance's key-bound tokens, whose subject is the device.
	device := c.SubID.DeviceID()
	for typ, ev := range events {
		if device != "" {
			r.apply(device, typ, ev, c.IssuedAt)
		}
		if r.onEvent != nil {
			r.onEvent(ctx, c, typ, ev)
		}
	}
	return nil
}

// apply updates the Client and Verifier for one event about device.
func (r *Receiver) apply(device, typ string, ev CAEPEvent, iat int64) {
	if r.client != nil {
		r.client.Invalidate(device)
	}
	if r.verifier == nil {
		return
	}
	// A notice (grace warning, break-glass start) leaves the device's tokens valid.
	revokes := typ == EventSessionRevoked ||
		typ == EventComplianceChange && ev.CurrentStatus != "compliant" && !notice(ev)
	if !revokes {
		return
	}
	at := time.Unix(ev.EventTimestamp, 0)
	switch {
	case ev.EventTimestamp == 0 && iat != 0:
		at = time.Unix(iat, 0)
	case ev.EventTimestamp == 0:
		at = r.now()
	}
	r.verifier.Revoke(device, at)
}

// remember records jti, forgetting the oldest beyond maxSeenJTIs, and reports whether it is
// new. Recording before applying makes two concurrent deliveries of one SET apply it once.
func (r *Receiver) remember(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[jti]; ok {
		return false
	}
	if old := r.seenRing[r.next]; old != "" {
		delete(r.seen, old)
	}
	r.seenRing[r.next] = jti
	r.next = (r.next + 1) % len(r.seenRing)
	r.seen[jti] = struct{}{}
	return true
}

func (r *Receiver) fail(w http.ResponseWriter, req *http.Request, e *setError) {
	r.logger.Warn("posture: refused a pushed SET", "status", e.status, "err", e.code, "description", e.desc,
		"remote", req.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(SETErr{Err: e.code, Description: e.desc})
}
