package events

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/posture"
)

// maxResponseBody bounds what is read of a receiver's answer.
const maxResponseBody = 64 << 10

// Run delivers push streams until ctx ends: one goroutine per enabled push stream, started,
// restarted and stopped as streams are created, changed (paused, enabled, given another
// endpoint) and deleted, so a receiver that hangs or fails delays only its own stream. Each stream's SETs go in the order they were emitted, and whatever is still in the
// outbox when Run returns is delivered by the next Run, after a restart too. Run returns when
// ctx ends and every deliverer has stopped. Only one Run may be active at a time.
func (t *Transmitter) Run(ctx context.Context) {
	t.mu.Lock()
	if t.running {
		t.mu.Unlock()
		t.log.Error("events: Run called while already running; ignoring the second call")
		return
	}
	t.running = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.running = false
		t.mu.Unlock()
	}()

	type deliverer struct {
		rev    uint64
		cancel context.CancelFunc
		done   chan struct{}
	}
	active := map[string]deliverer{}
	stop := func(d deliverer) {
		d.cancel()
		<-d.done // an aborted push returns at once; no two deliverers share a stream
	}
	defer func() {
		for _, d := range active {
			stop(d)
		}
	}()
	// reconcile starts a deliverer for every enabled push stream without one, restarts those
	// whose stream changed, and stops those of streams deleted, paused or disabled. It reports
	// whether it could read the streams.
	reconcile := func() bool {
		recs, err := t.records(ctx)
		if err != nil {
			t.log.Error("events: cannot list event streams; will retry", "err", err)
			return false
		}
		want := map[string]bool{}
		for _, r := range recs {
			if r.Delivery != deliveryPush || r.status() != StatusEnabled {
				continue
			}
			want[r.ID] = true
			if d, ok := active[r.ID]; ok {
				if d.rev == r.Rev {
					continue
				}
				stop(d)
			}
			dctx, cancel := context.WithCancel(ctx)
			d := deliverer{rev: r.Rev, cancel: cancel, done: make(chan struct{})}
			active[r.ID] = d
			go func() {
				defer close(d.done)
				t.deliver(dctx, r)
			}()
		}
		for id, d := range active {
			if !want[id] {
				stop(d)
				delete(active, id)
			}
		}
		t.reconciles.Add(1)
		return true
	}
	// streamsChanged signals after its commit, so a change reconcile did not see leaves a
	// signal behind.
	failures := 0
	for {
		var retry <-chan time.Time
		if reconcile() {
			failures = 0
		} else {
			tm := time.NewTimer(t.backoff(failures))
			retry = tm.C
			failures++
		}
		select {
		case <-ctx.Done():
			return
		case <-t.changed:
		case <-retry:
		}
	}
}

// outcome is what a push attempt means for the SET.
type outcome int

const (
	outcomeDelivered outcome = iota // the receiver took it: remove
	outcomeRejected                 // the receiver said it is invalid: remove, retrying cannot help
	outcomeRetry                    // try again later
)

// deliver pushes one stream's SETs in order until ctx ends.
func (t *Transmitter) deliver(ctx context.Context, r StreamRecord) {
	log := t.log.With("stream", r.ID)
	var auth string
	if len(r.AuthSealed) > 0 {
		b, err := t.key.Open(sealPurpose, r.AuthSealed)
		if err != nil {
			// Sending without the header would only be refused; keep the SETs for a fixed key.
			log.Error("events: cannot open the stream's sealed Authorization header; push delivery stopped", "err", err)
			t.failed(ctx, r.ID, "server error: the authorization header cannot be read; set it again")
			return
		}
		auth = string(b)
	}
	attempt := 0
	for {
		woken := t.signal(r.ID)
		es, err := t.peek(ctx, r.ID, 1)
		if err != nil {
			log.Error("events: cannot read the outbox", "err", err)
			t.failed(ctx, r.ID, "server error")
			if !t.sleep(ctx, t.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if len(es) == 0 {
			attempt = 0
			select {
			case <-ctx.Done():
				return
			case <-woken:
			}
			continue
		}
		e := es[0]
		res, retryAfter, msg := t.push(ctx, log, r, auth, e.SET)
		if ctx.Err() != nil {
			return // stopping (or the stream was deleted): the SET stays for the next Run
		}
		switch res {
		case outcomeDelivered, outcomeRejected:
			note := func(rec *StreamRecord) { rec.LastDeliveredAt = t.now().UTC() }
			if res == outcomeRejected {
				note = func(rec *StreamRecord) { rec.LastError, rec.LastErrorAt = msg, t.now().UTC() }
			}
			if err := t.remove(ctx, r.ID, e.Seq, note); err != nil {
				log.Error("events: cannot remove a delivered SET from the outbox; it will be sent again", "jti", e.JTI, "err", err)
				t.failed(ctx, r.ID, "server error")
				if !t.sleep(ctx, t.backoff(attempt)) {
					return
				}
				attempt++
				continue
			}
			attempt = 0
			if res == outcomeRejected {
				log.Warn("events: receiver rejected a SET; dropped", "jti", e.JTI, "error", msg)
			}
		case outcomeRetry:
			t.failed(ctx, r.ID, msg)
			wait := t.backoff(attempt)
			if retryAfter > wait {
				wait = min(retryAfter, t.maxBackoff)
			}
			log.Warn("events: push delivery failed; will retry", "jti", e.JTI, "class", msg, "retry_in", wait)
			if !t.sleep(ctx, wait) {
				return
			}
			attempt++
		}
	}
}

// push POSTs one SET (RFC 8935 section 2) and classifies the answer. msg is what the stream's
// owner may read: a class, never transport details, which go to the server's log (a receiver
// must not learn from Hale which inside ports are open, or what an inside server answers).
func (t *Transmitter) push(ctx context.Context, log *slog.Logger, r StreamRecord, auth, set string) (res outcome, retryAfter time.Duration, msg string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.EndpointURL, strings.NewReader(set))
	if err != nil {
		log.Error("events: cannot build the push request", "err", err)
		return outcomeRetry, 0, "server error"
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		class, result := classify(err)
		if ctx.Err() == nil {
			log.Warn("events: push failed", "class", class, "err", err)
			t.metrics.result(deliveryPush, result, 1)
		}
		return outcomeRetry, 0, class
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	refused := fmt.Sprintf("receiver refused: %d", resp.StatusCode)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		t.metrics.result(deliveryPush, resultDelivered, 1)
		return outcomeDelivered, 0, ""
	case resp.StatusCode == http.StatusBadRequest:
		var se posture.SETErr
		if json.Unmarshal(body, &se) == nil && validErrCode(se.Err) {
			log.Warn("events: receiver rejected a SET", "err", se.Err, "description", truncate(se.Description, 256))
			t.metrics.result(deliveryPush, resultRejected, 1)
			return outcomeRejected, 0, "receiver rejected the SET: " + se.Err
		}
		// A 400 without an RFC 8935 error is not a verdict on the SET but a receiver that
		// does not speak the protocol (wrong URL, a proxy): keep the SET until it is fixed.
		t.metrics.result(deliveryPush, resultRefused, 1)
		return outcomeRetry, 0, refused
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		t.metrics.result(deliveryPush, resultRefused, 1)
		return outcomeRetry, parseRetryAfter(resp.Header.Get("Retry-After")), refused
	default:
		// 5xx, and 3xx/401/403/404: the receiver or its configuration is broken, not the SET.
		t.metrics.result(deliveryPush, resultRefused, 1)
		return outcomeRetry, 0, refused
	}
}

// classify turns a transport error into what the stream's owner is told, and a metric result.
func classify(err error) (class, result string) {
	var (
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		verifyErr  *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, ErrDestinationNotAllowed):
		return "destination not allowed", resultNotAllowed
	case errors.As(err, &recordErr), errors.As(err, &alertErr), errors.As(err, &verifyErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr):
		return "TLS error", resultTLS
	}
	return "connection failed", resultConnection
}

// validErrCode accepts the short snake_case codes of RFC 8935's error registry, and nothing a
// server that is not an SSF receiver might put there.
func validErrCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// parseRetryAfter reads a Retry-After of delay-seconds (HTTP dates are ignored).
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(min(n, 24*3600)) * time.Second
}

// backoff is the wait before retry number attempt: exponential from minBackoff, capped at
// maxBackoff, jittered down to half so receivers coming back are not hit in lockstep.
func (t *Transmitter) backoff(attempt int) time.Duration {
	d := t.minBackoff
	for i := 0; i < attempt && d < t.maxBackoff; i++ {
		if d > t.maxBackoff/2 {
			d = t.maxBackoff
			break
		}
		d *= 2
	}
	d = min(d, t.maxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits d or until ctx ends; it reports whether to go on.
func (t *Transmitter) sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
