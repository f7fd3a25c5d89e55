package events

import (
	"net/http"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

// Poll limits (RFC 8936).
const (
	maxPollBody      = 64 << 10
	defaultMaxEvents = 100
	maxMaxEvents     = 1000
	// maxRequestBody bounds stream management bodies.
	maxRequestBody = 64 << 10
)

// PollHandler serves RFC 8936 polls: POST with the stream ID as path value "id", from the
// credential that owns the stream (anyone else is told there is no such stream, and nothing is
// acknowledged). It first removes the SETs the receiver acknowledged (or rejected in setErrs,
// which are logged), then returns up to maxEvents (default 100, at most 1000) pending SETs.
// With none pending and returnImmediately false it waits for an Emit, up to the poll wait.
// SETs stay in the outbox until acknowledged, so a receiver that lost a response gets them
// again on the next poll. A paused or disabled stream transmits nothing.
func (t *Transmitter) PollHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "poll with POST")
			return
		}
		id := r.PathValue("id")
		noteStream(r, id)
		rec, err := t.record(r.Context(), id)
		if err == nil && !t.caller(r).owns(rec) {
			err = notFound(id)
		}
		if err != nil {
			t.writeErr(w, r, err)
			return
		}
		if rec.Delivery != deliveryPoll {
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
			if cur, err := t.record(r.Context(), rec.ID); err != nil || cur.status() != StatusEnabled {
				httpjson.Write(w, http.StatusOK, posture.PollResponse{SETs: map[string]string{}})
				return
			}
			es, err := t.peek(r.Context(), rec.ID, maxEvents+1)
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
	// What the receiver rejected, in its own words, shown back to it.
	var lastRejection string
	for jti, se := range req.SETErrs {
		msg := "receiver rejected the SET: " + truncate(se.Err, 64)
		if se.Description != "" {
			msg += ": " + truncate(se.Description, 256)
		}
		t.log.WarnContext(r.Context(), "events: poll receiver rejected a SET; dropped", "stream", streamID, "jti", truncate(jti, 64), "error", msg)
		lastRejection = msg
	}
	removed := 0
	ctx := r.Context()
	now := t.now().UTC()
	err := t.st.Update(ctx, func(tx Tx) error {
		ob := tx.Events()
		queued, err := ob.Queued(ctx, streamID, 0)
		if err != nil {
			return err
		}
		removed = 0 // the unit of work may run again
		for _, e := range queued {
			if !done[e.JTI] {
				continue
			}
			if err := ob.Dequeue(ctx, streamID, e.Seq); err != nil {
				return err
			}
			removed++
		}
		rejected := min(len(req.SETErrs), removed)
		if lastRejection == "" && (len(req.Ack) == 0 || removed == rejected) {
			return nil
		}
		// The delivery state goes with the acknowledgement, on the stream: every server shows it.
		return noteOn(ctx, ob, streamID, func(rec *StreamRecord) {
			if lastRejection != "" {
				rec.LastError, rec.LastErrorAt = lastRejection, now
			}
			if len(req.Ack) > 0 && removed > rejected {
				rec.LastDeliveredAt = now
			}
		})
	})
	if err != nil {
		return err
	}
	rejected := min(len(req.SETErrs), removed)
	t.metrics.result(deliveryPoll, resultRejected, rejected)
	t.metrics.result(deliveryPoll, resultDelivered, removed-rejected)
	return nil
}
