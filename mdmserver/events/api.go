package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/halemdm/hale/api"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

// The stream management API (OpenID SSF 1.0 section 8), under the issuer. Every handler acts
// for the caller WithCaller names: a receiver sees and manages only the streams its credential
// created; another receiver's stream answers 404, as if it did not exist.
const (
	pathStream        = "/ssf/v1/stream"
	pathStatus        = "/ssf/v1/status"
	pathAddSubject    = "/ssf/v1/subjects/add"
	pathRemoveSubject = "/ssf/v1/subjects/remove"
	pathVerify        = "/ssf/v1/verify"
)

// ConfigurationHandler serves the SSF transmitter configuration metadata
// (GET /.well-known/ssf-configuration).
func (t *Transmitter) ConfigurationHandler() http.Handler {
	cfg := api.SSFConfiguration{
		SpecVersion:              "1_0",
		Issuer:                   t.issuer,
		JWKSURI:                  t.issuer + "/access/v1/jwks.json",
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    t.issuer + pathStream,
		StatusEndpoint:           t.issuer + pathStatus,
		AddSubjectEndpoint:       t.issuer + pathAddSubject,
		RemoveSubjectEndpoint:    t.issuer + pathRemoveSubject,
		VerificationEndpoint:     t.issuer + pathVerify,
		AuthorizationSchemes:     []api.SSFAuthorizationScheme{{SpecURN: "urn:ietf:rfc:6750"}},
		DefaultSubjects:          "ALL",
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "fetch the configuration with GET")
			return
		}
		httpjson.Write(w, http.StatusOK, cfg)
	})
}

// updateBody is the body of PATCH and PUT. A stream as read may be sent back whole: the
// Transmitter-Supplied members must then match, and Hale's read-only members are ignored.
type updateBody struct {
	StreamID        string    `json:"stream_id"`
	Delivery        *Delivery `json:"delivery,omitempty"`
	EventsRequested *[]string `json:"events_requested,omitempty"`
	Description     *string   `json:"description,omitempty"`
	Audience        string    `json:"aud,omitempty"`

	Issuer                  *string   `json:"iss,omitempty"`
	EventsSupported         *[]string `json:"events_supported,omitempty"`
	EventsDelivered         *[]string `json:"events_delivered,omitempty"`
	MinVerificationInterval *int      `json:"min_verification_interval,omitempty"`

	Status           json.RawMessage `json:"status,omitempty"`
	StatusReason     json.RawMessage `json:"status_reason,omitempty"`
	Subjects         json.RawMessage `json:"subjects,omitempty"`
	Owner            json.RawMessage `json:"owner,omitempty"`
	AuthorizationSet json.RawMessage `json:"authorization_set,omitempty"`
	CreatedAt        json.RawMessage `json:"created_at,omitempty"`
	Pending          json.RawMessage `json:"pending,omitempty"`
	LastDeliveredAt  json.RawMessage `json:"last_delivered_at,omitempty"`
	LastError        json.RawMessage `json:"last_error,omitempty"`
	LastErrorAt      json.RawMessage `json:"last_error_at,omitempty"`
}

// CreateStreamHandler serves POST /ssf/v1/stream: 201 with the stream, owned by the caller. No
// delivery means poll; unknown requested event types are kept and ignored.
func (t *Transmitter) CreateStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b api.EventStreamRequest
		if !problem.DecodeJSON(w, r, maxRequestBody, &b) {
			return
		}
		c := Config{EventsRequested: b.EventsRequested, Description: b.Description, Audience: b.Audience}
		if b.Delivery != nil {
			c.Delivery = *b.Delivery
		}
		s, err := t.CreateStream(r.Context(), t.caller(r), c)
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		noteStream(r, s.StreamID)
		w.Header().Set("Location", t.issuer+pathStream+"?stream_id="+url.QueryEscape(s.StreamID))
		writeNoStore(w, http.StatusCreated, s)
	})
}

// GetStreamHandler serves GET /ssf/v1/stream?stream_id=ID, and without stream_id the list of
// the caller's streams (every stream for a caller who may read all), as a JSON array.
func (t *Transmitter) GetStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("stream_id")
		if id == "" {
			list, err := t.ListStreams(r.Context(), t.caller(r))
			if err != nil {
				t.writeErr(w, r, err)
				return
			}
			writeNoStore(w, http.StatusOK, list)
			return
		}
		noteStream(r, id)
		s, err := t.GetStream(r.Context(), t.caller(r), id)
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		writeNoStore(w, http.StatusOK, s)
	})
}

// UpdateStreamHandler serves PATCH /ssf/v1/stream (replace false: members left out stay) and
// PUT /ssf/v1/stream (replace true: members left out are removed), answering the whole stream.
func (t *Transmitter) UpdateStreamHandler(replace bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b updateBody
		if !problem.DecodeJSON(w, r, maxRequestBody, &b) {
			return
		}
		if b.StreamID == "" {
			problem.BadRequest(w, r, "stream_id is required")
			return
		}
		noteStream(r, b.StreamID)
		p := Patch{Delivery: b.Delivery, EventsRequested: b.EventsRequested, Description: b.Description, Audience: b.Audience}
		s, err := t.UpdateStream(r.Context(), t.caller(r), b.StreamID, p, replace, func(cur *Stream) error {
			return t.sameSupplied(cur, &b)
		})
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		writeNoStore(w, http.StatusOK, s)
	})
}

// sameSupplied checks the Transmitter-Supplied members a PATCH or PUT carries against the
// stream as it was: SSF lets a receiver send them back, but not change them.
func (t *Transmitter) sameSupplied(cur *Stream, b *updateBody) error {
	bad := func(name string) error {
		return fmt.Errorf("%w stream: %s is set by Hale and does not match the stream's", ErrInvalid, name)
	}
	switch {
	case b.Issuer != nil && *b.Issuer != cur.Issuer:
		return bad("iss")
	case b.EventsSupported != nil && !slices.Equal(*b.EventsSupported, cur.EventsSupported):
		return bad("events_supported")
	case b.EventsDelivered != nil && !slices.Equal(*b.EventsDelivered, cur.EventsDelivered):
		return bad("events_delivered")
	case b.MinVerificationInterval != nil && *b.MinVerificationInterval != cur.MinVerificationInterval:
		return bad("min_verification_interval")
	}
	return nil
}

// DeleteStreamHandler serves DELETE /ssf/v1/stream?stream_id=ID: 204, and the stream's
// pending SETs and subjects are dropped.
func (t *Transmitter) DeleteStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := streamParam(w, r)
		if !ok {
			return
		}
		if err := t.DeleteStream(r.Context(), t.caller(r), id); err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// GetStatusHandler serves GET /ssf/v1/status?stream_id=ID.
func (t *Transmitter) GetStatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := streamParam(w, r)
		if !ok {
			return
		}
		st, err := t.Status(r.Context(), t.caller(r), id)
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		writeNoStore(w, http.StatusOK, st)
	})
}

// SetStatusHandler serves POST /ssf/v1/status {"stream_id","status","reason"}: 200 with the
// new status.
func (t *Transmitter) SetStatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b StreamStatus
		if !decodeWithStream(w, r, &b, &b.StreamID) {
			return
		}
		st, err := t.SetStatus(r.Context(), t.caller(r), b.StreamID, b.Status, b.Reason)
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		writeNoStore(w, http.StatusOK, st)
	})
}

// subjectBody is the body of the add and remove subject requests.
type subjectBody struct {
	StreamID string            `json:"stream_id"`
	Subject  posture.SubjectID `json:"subject"`
	// Verified is accepted and not used: Hale checks nothing about a device the receiver
	// names, it only filters on it.
	Verified *bool `json:"verified,omitempty"`
}

// SubjectHandler serves POST /ssf/v1/subjects/add (an empty 200) and, with remove,
// POST /ssf/v1/subjects/remove (204).
func (t *Transmitter) SubjectHandler(remove bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b subjectBody
		if !decodeWithStream(w, r, &b, &b.StreamID) {
			return
		}
		op, status := t.AddSubject, http.StatusOK
		if remove {
			op, status = t.RemoveSubject, http.StatusNoContent
		}
		if err := op(r.Context(), t.caller(r), b.StreamID, b.Subject); err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
	})
}

// VerifyHandler serves POST /ssf/v1/verify {"stream_id","state"}: 204, and a verification
// event echoing state waits in the stream's outbox.
func (t *Transmitter) VerifyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			StreamID string `json:"stream_id"`
			State    string `json:"state,omitempty"`
		}
		if !decodeWithStream(w, r, &b, &b.StreamID) {
			return
		}
		if err := t.Verify(r.Context(), t.caller(r), b.StreamID, b.State); err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// decodeWithStream decodes a JSON body that must name a stream in *id.
func decodeWithStream(w http.ResponseWriter, r *http.Request, v any, id *string) bool {
	if !problem.DecodeJSON(w, r, maxRequestBody, v) {
		return false
	}
	if *id == "" {
		problem.BadRequest(w, r, "stream_id is required")
		return false
	}
	noteStream(r, *id)
	return true
}

// streamParam reads the required stream_id query parameter.
func streamParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		problem.BadRequest(w, r, "the stream_id query parameter is required")
		return "", false
	}
	noteStream(r, id)
	return id, true
}

func writeNoStore(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, status, v)
}

// writeErr answers err as a problem; unexpected errors are logged, not shown.
func (t *Transmitter) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		problem.NotFound(w, r, err.Error())
	case errors.Is(err, ErrInvalid):
		problem.BadRequest(w, r, err.Error())
	case errors.Is(err, ErrForbidden):
		problem.Error(w, r, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, ErrTooMany):
		problem.Error(w, r, http.StatusConflict, "too-many", err.Error())
	case errors.Is(err, ErrDisabled):
		problem.Error(w, r, http.StatusConflict, "stream-disabled", err.Error())
	case errors.Is(err, ErrTooSoon):
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(t.minVerify.Seconds()))))
		problem.Error(w, r, http.StatusTooManyRequests, "too-soon", err.Error())
	default:
		t.log.ErrorContext(r.Context(), "events: request failed", "path", r.URL.Path, "err", err)
		problem.Internal(w, r)
	}
}

type noteKey struct{}

// TrackStream returns r with room for the ID of the stream a stream API request names, and a
// function that returns it once the handler has run: for the audit record of the request.
func TrackStream(r *http.Request) (*http.Request, func() string) {
	id := new(string)
	return r.WithContext(context.WithValue(r.Context(), noteKey{}, id)), func() string { return *id }
}

// noteStream records the stream a request names, when TrackStream made room for it.
func noteStream(r *http.Request, id string) {
	if p, ok := r.Context().Value(noteKey{}).(*string); ok {
		*p = truncate(id, 64)
	}
}
