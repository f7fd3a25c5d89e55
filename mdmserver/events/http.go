package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

// Poll limits (RFC 8936).
const (
	maxPollBody      = 64 << 10
	defaultMaxEvents = 100
	maxMaxEvents     = 1000
	// maxRequestBody bounds admin API bodies.
	maxRequestBody = 64 << 10
)

// PollHandler serves RFC 8936 polls: POST with the stream ID as path value "id". It first
// removes the SETs the receiver acknowledged (or rejected in setErrs, which are logged), then
// returns up to maxEvents (default 100, at most 1000) pending SETs. With none pending and
// returnImmediately false it waits for an Emit, up to the poll wait. SETs stay in the outbox
// until acknowledged, so a receiver that lost a response gets them again on the next poll.
func (t *Transmitter) PollHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "poll with POST")
			return
		}
		id := r.PathValue("id")
		rec, err := t.record(id)
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		if rec.Delivery != DeliveryPoll {
			problem.Error(w, r, http.StatusConflict, "not-a-poll-stream", "stream "+rec.ID+" is delivered by push; it cannot be polled")
			return
		}
		var req posture.PollRequest
		// RFC 8936 bodies are JSON objects, but an empty poll means "send me what you have".
		if r.ContentLength != 0 {
			if !problem.DecodeJSON(w, r, maxPollBody, &req) {
				return
			}
		}
		maxEvents := defaultMaxEvents
		if req.MaxEvents != nil {
			if *req.MaxEvents < 0 {
				problem.BadRequest(w, r, "maxEvents must not be negative")
				return
			}
			maxEvents = min(*req.MaxEvents, maxMaxEvents)
		}
		if err := t.acknowledge(r, rec.ID, req); err != nil {
			t.writeErr(w, r, err)
			return
		}

		var timer <-chan time.Time
		for {
			woken := t.signal(rec.ID)
			es, err := t.peek(rec.ID, maxEvents+1)
			if err != nil {
				t.writeErr(w, r, err)
				return
			}
			if len(es) > 0 || maxEvents == 0 || req.ReturnImmediately || t.pollWait <= 0 {
				resp := posture.PollResponse{SETs: map[string]string{}, MoreAvailable: len(es) > maxEvents}
				for _, e := range es[:min(len(es), maxEvents)] {
					resp.SETs[e.JTI] = e.SET
				}
				httpjson.Write(w, http.StatusOK, resp)
				return
			}
			if timer == nil {
				tm := time.NewTimer(t.pollWait)
				defer tm.Stop()
				timer = tm.C
			}
			select {
			case <-woken:
				continue
			case <-timer:
			case <-r.Context().Done():
			}
			httpjson.Write(w, http.StatusOK, posture.PollResponse{SETs: map[string]string{}})
			return
		}
	})
}

// acknowledge removes the SETs a poll acknowledged or rejected, in one transaction. Unknown
// jtis are ignored (RFC 8936 section 2.4): they may be acknowledged twice.
func (t *Transmitter) acknowledge(r *http.Request, streamID string, req posture.PollRequest) error {
	if len(req.Ack) == 0 && len(req.SETErrs) == 0 {
		return nil
	}
	done := make(map[string]bool, len(req.Ack)+len(req.SETErrs))
	for _, j := range req.Ack {
		done[j] = true
	}
	for j := range req.SETErrs {
		done[j] = true
	}
	removed := 0
	err := t.db.Update(func(tx *bbolt.Tx) error {
		ob := tx.Bucket(outboxBucket)
		prefix := outboxPrefix(streamID)
		var keys [][]byte
		c := ob.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e entry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if done[e.JTI] {
				keys = append(keys, bytes.Clone(k))
			}
		}
		for _, k := range keys {
			if err := ob.Delete(k); err != nil {
				return err
			}
		}
		removed = len(keys)
		return nil
	})
	if err != nil {
		return err
	}
	for jti, se := range req.SETErrs {
		msg := "receiver rejected the SET: " + truncate(se.Err, 64)
		if se.Description != "" {
			msg += ": " + truncate(se.Description, 256)
		}
		t.log.WarnContext(r.Context(), "events: poll receiver rejected a SET; dropped", "stream", streamID, "jti", truncate(jti, 64), "error", msg)
		t.failed(streamID, msg)
	}
	if len(req.Ack) > 0 && removed > 0 {
		t.delivered(streamID)
	}
	return nil
}

// ConfigurationHandler serves the SSF transmitter configuration metadata
// (GET /.well-known/ssf-configuration).
func (t *Transmitter) ConfigurationHandler() http.Handler {
	cfg := map[string]any{
		"spec_version":               "1_0",
		"issuer":                     t.issuer,
		"jwks_uri":                   t.issuer + "/access/v1/jwks.json",
		"delivery_methods_supported": []string{urnPush, urnPoll},
		"configuration_endpoint":     t.issuer + "/api/v1/event-streams",
		"authorization_schemes":      []map[string]string{{"spec_urn": "urn:ietf:rfc:6750"}},
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

// createStreamRequest is the body of POST /api/v1/event-streams.
type createStreamRequest struct {
	Delivery            string   `json:"delivery"`
	EndpointURL         string   `json:"endpoint_url,omitempty"`
	Audience            string   `json:"audience"`
	EventsRequested     []string `json:"events_requested,omitempty"`
	AuthorizationHeader string   `json:"authorization_header,omitempty"`
}

// CreateStreamHandler serves POST /api/v1/event-streams: it answers 201 with the stream.
func (t *Transmitter) CreateStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req createStreamRequest
		if !problem.DecodeJSON(w, r, maxRequestBody, &req) {
			return
		}
		s, err := t.CreateStream(r.Context(), Stream{
			Delivery:            req.Delivery,
			EndpointURL:         req.EndpointURL,
			Audience:            req.Audience,
			EventsRequested:     req.EventsRequested,
			AuthorizationHeader: req.AuthorizationHeader,
		})
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.Header().Set("Location", strings.TrimRight(r.URL.Path, "/")+"/"+s.ID)
		httpjson.Write(w, http.StatusCreated, s)
	})
}

// ListStreamsHandler serves GET /api/v1/event-streams: {"streams": [...]}.
func (t *Transmitter) ListStreamsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list, err := t.ListStreams(r.Context())
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"streams": list})
	})
}

// GetStreamHandler serves GET /api/v1/event-streams/{id}.
func (t *Transmitter) GetStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := t.GetStream(r.Context(), r.PathValue("id"))
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		httpjson.Write(w, http.StatusOK, s)
	})
}

// DeleteStreamHandler serves DELETE /api/v1/event-streams/{id}: 204, and the stream's pending
// SETs are dropped.
func (t *Transmitter) DeleteStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.DeleteStream(r.Context(), r.PathValue("id")); err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// VerifyStreamHandler serves POST /api/v1/event-streams/{id}/verify: 202, and an SSF
// verification event waits in the stream's outbox, so an administrator can check a receiver
// end to end.
func (t *Transmitter) VerifyStreamHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.Verify(r.Context(), r.PathValue("id")); err != nil {
			t.writeErr(w, r, err)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// writeErr answers err as a problem; unexpected errors are logged, not shown.
func (t *Transmitter) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		problem.NotFound(w, r, err.Error())
	case errors.Is(err, ErrInvalid):
		problem.BadRequest(w, r, err.Error())
	default:
		t.log.ErrorContext(r.Context(), "events: request failed", "path", r.URL.Path, "err", err)
		problem.Internal(w, r)
	}
}
