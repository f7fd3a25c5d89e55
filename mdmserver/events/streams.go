package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/posture"
)

// Delivery methods.
const (
	DeliveryPush = "push" // RFC 8935: Hale POSTs each SET to the receiver
	DeliveryPoll = "poll" // RFC 8936: the receiver polls Hale
)

// Delivery method URNs (SSF), accepted as aliases of push and poll.
const (
	urnPush = "urn:ietf:rfc:8935"
	urnPoll = "urn:ietf:rfc:8936"
)

// Limits on stream configuration.
const (
	maxAudience   = 256
	maxURL        = 2048
	maxAuthHeader = 4096
)

// Stream is a configured receiver.
type Stream struct {
	ID       string `json:"id"`
	Delivery string `json:"delivery"` // "push" (RFC 8935) or "poll" (RFC 8936)
	// EndpointURL is where push delivery POSTs SETs: https, or http for loopback hosts only.
	EndpointURL string `json:"endpoint_url,omitempty"`
	Audience    string `json:"audience"` // the SET "aud"
	// EventsRequested are the CAEP event types the receiver wants; default both.
	EventsRequested []string `json:"events_requested"`
	// AuthorizationHeader is sent with every push. It is write-only: sealed at rest and never
	// returned; AuthorizationSet says whether there is one.
	AuthorizationHeader string    `json:"authorization_header,omitempty"`
	AuthorizationSet    bool      `json:"authorization_set,omitempty"`
	CreatedAt           time.Time `json:"created_at"`

	// Status, filled on read. Delivery state other than Pending is kept in memory: it
	// restarts empty with the server.
	Pending         int       `json:"pending"`
	LastDeliveredAt time.Time `json:"last_delivered_at,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
}

// record is a stream as stored: the Authorization header only sealed.
type record struct {
	ID              string    `json:"id"`
	Delivery        string    `json:"delivery"`
	EndpointURL     string    `json:"endpoint_url,omitempty"`
	Audience        string    `json:"audience"`
	EventsRequested []string  `json:"events_requested"`
	AuthSealed      []byte    `json:"auth_sealed,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
}

// wants reports whether the stream receives events of type typ.
func (r *record) wants(typ string) bool { return slices.Contains(r.EventsRequested, typ) }

// requestable are the event types a stream may ask for. Verification events are not asked
// for: they go to the one stream being verified.
var requestable = []string{posture.EventComplianceChange, posture.EventSessionRevoked}

// validate normalizes s and checks it, returning an ErrInvalid error that says what is wrong.
func validate(s *Stream) error {
	switch s.Delivery {
	case DeliveryPush, urnPush:
		s.Delivery = DeliveryPush
		if err := validateEndpoint(s.EndpointURL); err != nil {
			return err
		}
	case DeliveryPoll, urnPoll:
		s.Delivery = DeliveryPoll
		if s.EndpointURL != "" {
			return fmt.Errorf("%w stream: endpoint_url is for push streams; a poll receiver calls Hale", ErrInvalid)
		}
		if s.AuthorizationHeader != "" {
			return fmt.Errorf("%w stream: authorization_header is for push streams; a poll receiver authenticates to Hale", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w stream: delivery must be push or poll, got %q", ErrInvalid, truncate(s.Delivery, 64))
	}
	if strings.TrimSpace(s.Audience) == "" {
		return fmt.Errorf("%w stream: audience is required (the receiver's identifier, the SET aud)", ErrInvalid)
	}
	if len(s.Audience) > maxAudience {
		return fmt.Errorf("%w stream: audience is longer than %d bytes", ErrInvalid, maxAudience)
	}
	if hasControl(s.Audience) {
		return fmt.Errorf("%w stream: audience contains control characters", ErrInvalid)
	}
	if len(s.EventsRequested) == 0 {
		s.EventsRequested = slices.Clone(requestable)
	} else {
		var evs []string
		for _, e := range s.EventsRequested {
			if !slices.Contains(requestable, e) {
				return fmt.Errorf("%w stream: event type %q is not one Hale emits (%s)", ErrInvalid, truncate(e, 200), strings.Join(requestable, ", "))
			}
			if !slices.Contains(evs, e) {
				evs = append(evs, e)
			}
		}
		s.EventsRequested = evs
	}
	if len(s.AuthorizationHeader) > maxAuthHeader {
		return fmt.Errorf("%w stream: authorization_header is longer than %d bytes", ErrInvalid, maxAuthHeader)
	}
	if hasControl(s.AuthorizationHeader) {
		return fmt.Errorf("%w stream: authorization_header contains control characters", ErrInvalid)
	}
	return nil
}

// validateEndpoint accepts https URLs, and http ones only to loopback hosts (a receiver on the
// same machine): SETs and the receiver's credential must not cross a network in the clear.
func validateEndpoint(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w stream: endpoint_url is required for push delivery", ErrInvalid)
	}
	if len(raw) > maxURL {
		return fmt.Errorf("%w stream: endpoint_url is longer than %d bytes", ErrInvalid, maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w stream: endpoint_url: %v", ErrInvalid, err)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w stream: endpoint_url must be an absolute URL with a host", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("%w stream: endpoint_url must not carry credentials; use authorization_header", ErrInvalid)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w stream: endpoint_url must not have a fragment", ErrInvalid)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%w stream: endpoint_url must be https (http only to localhost)", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w stream: endpoint_url scheme %q is not https", ErrInvalid, truncate(u.Scheme, 32))
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CreateStream validates s, assigns its ID and creation time, and stores it. The returned
// stream has no AuthorizationHeader. Validation failures wrap ErrInvalid.
func (t *Transmitter) CreateStream(ctx context.Context, s Stream) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return Stream{}, err
	}
	if err := validate(&s); err != nil {
		return Stream{}, err
	}
	rec := record{
		ID:              "ss_" + randomHex(16),
		Delivery:        s.Delivery,
		EndpointURL:     s.EndpointURL,
		Audience:        s.Audience,
		EventsRequested: s.EventsRequested,
		CreatedAt:       t.now().UTC(),
	}
	if s.AuthorizationHeader != "" {
		rec.AuthSealed = t.key.Seal(sealPurpose, []byte(s.AuthorizationHeader))
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return Stream{}, fmt.Errorf("events: encode stream: %w", err)
	}
	err = t.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(streamsBucket).Put([]byte(rec.ID), v) })
	if err != nil {
		return Stream{}, fmt.Errorf("events: store stream: %w", err)
	}
	t.streamsChanged()
	return t.view(&rec), nil
}

// ListStreams returns every stream with its status, ordered by ID.
func (t *Transmitter) ListStreams(ctx context.Context) ([]Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := t.records()
	if err != nil {
		return nil, err
	}
	out := make([]Stream, 0, len(recs))
	for i := range recs {
		out = append(out, t.view(&recs[i]))
	}
	return out, nil
}

// GetStream returns one stream with its status, or an error wrapping ErrNotFound.
func (t *Transmitter) GetStream(ctx context.Context, id string) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return Stream{}, err
	}
	rec, err := t.record(id)
	if err != nil {
		return Stream{}, err
	}
	return t.view(rec), nil
}

// DeleteStream removes a stream and every SET still waiting for it, in one transaction, and
// stops its deliverer.
func (t *Transmitter) DeleteStream(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := t.db.Update(func(tx *bbolt.Tx) error {
		sb := tx.Bucket(streamsBucket)
		if sb.Get([]byte(id)) == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, truncate(id, 64))
		}
		if err := sb.Delete([]byte(id)); err != nil {
			return err
		}
		// Collect first: deleting under a cursor skips keys.
		prefix := outboxPrefix(id)
		var keys [][]byte
		c := tx.Bucket(outboxBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		ob := tx.Bucket(outboxBucket)
		for _, k := range keys {
			if err := ob.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	delete(t.status, id)
	t.mu.Unlock()
	t.notify(id)
	t.streamsChanged()
	return nil
}

// records reads every stored stream, ordered by ID.
func (t *Transmitter) records() ([]record, error) {
	var out []record
	err := t.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(streamsBucket).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("events: corrupt stream %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// record reads one stored stream.
func (t *Transmitter) record(id string) (*record, error) {
	var r *record
	err := t.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(streamsBucket).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, truncate(id, 64))
		}
		r = &record{}
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("events: corrupt stream %q: %w", id, err)
		}
		return nil
	})
	return r, err
}

// view is the public form of a record, with its status.
func (t *Transmitter) view(r *record) Stream {
	s := Stream{
		ID:               r.ID,
		Delivery:         r.Delivery,
		EndpointURL:      r.EndpointURL,
		Audience:         r.Audience,
		EventsRequested:  slices.Clone(r.EventsRequested),
		AuthorizationSet: len(r.AuthSealed) > 0,
		CreatedAt:        r.CreatedAt,
		Pending:          t.Pending(r.ID),
	}
	t.mu.Lock()
	if st := t.status[r.ID]; st != nil {
		s.LastDeliveredAt, s.LastError, s.LastErrorAt = st.lastDeliveredAt, st.lastError, st.lastErrorAt
	}
	t.mu.Unlock()
	return s
}

// delivered records a successful delivery.
func (t *Transmitter) delivered(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statusLocked(id).lastDeliveredAt = t.now().UTC()
}

// failed records a delivery failure.
func (t *Transmitter) failed(id, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.statusLocked(id)
	st.lastError, st.lastErrorAt = msg, t.now().UTC()
}

func (t *Transmitter) statusLocked(id string) *deliveryStatus {
	st := t.status[id]
	if st == nil {
		st = &deliveryStatus{}
		t.status[id] = st
	}
	return st
}

// streamsChanged tells Run to start or stop deliverers.
func (t *Transmitter) streamsChanged() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}
