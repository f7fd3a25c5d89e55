package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/posture"
)

// maxResponseBody bounds what is read of a receiver's answer.
const maxResponseBody = 64 << 10

// Run delivers push streams until ctx ends: one goroutine per push stream, started and stopped
// as streams are created and deleted, so a receiver that hangs or fails delays only its own
// stream. Each stream's SETs go in the order they were emitted, and whatever is still in the
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

	var wg sync.WaitGroup
	active := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range active {
			cancel()
		}
		wg.Wait()
	}()
	// reconcile starts a deliverer for every push stream without one and stops those of
	// deleted streams. It reports whether it could read the streams.
	reconcile := func() bool {
		recs, err := t.records()
		if err != nil {
			t.log.Error("events: cannot list event streams; will retry", "err", err)
			return false
		}
		want := map[string]bool{}
		for _, r := range recs {
			if r.Delivery != DeliveryPush {
				continue
			}
			want[r.ID] = true
			if _, ok := active[r.ID]; ok {
				continue
			}
			dctx, cancel := context.WithCancel(ctx)
			active[r.ID] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.deliver(dctx, r)
			}()
		}
		for id, cancel := range active {
			if !want[id] {
				cancel()
				delete(active, id)
			}
		}
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
func (t *Transmitter) deliver(ctx context.Context, r record) {
	log := t.log.With("stream", r.ID)
	defer func() {
		// A deleted stream's status goes with it.
		if _, err := t.record(r.ID); errors.Is(err, ErrNotFound) {
			t.mu.Lock()
			delete(t.status, r.ID)
			t.mu.Unlock()
		}
	}()
	var auth string
	if len(r.AuthSealed) > 0 {
		b, err := t.key.Open(sealPurpose, r.AuthSealed)
		if err != nil {
			// Sending without the header would only be refused; keep the SETs for a fixed key.
			log.Error("events: cannot open the stream's sealed Authorization header; push delivery stopped", "err", err)
			t.failed(r.ID, "cannot open the sealed authorization header: "+err.Error())
			return
		}
		auth = string(b)
	}
	attempt := 0
	for {
		woken := t.signal(r.ID)
		es, err := t.peek(r.ID, 1)
		if err != nil {
			log.Error("events: cannot read the outbox", "err", err)
			t.failed(r.ID, err.Error())
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
		res, retryAfter, msg := t.push(ctx, r, auth, e.SET)
		if ctx.Err() != nil {
			return // stopping (or the stream was deleted): the SET stays for the next Run
		}
		switch res {
		case outcomeDelivered, outcomeRejected:
			if err := t.remove(e.key); err != nil {
				log.Error("events: cannot remove a delivered SET from the outbox; it will be sent again", "jti", e.JTI, "err", err)
				t.failed(r.ID, err.Error())
				if !t.sleep(ctx, t.backoff(attempt)) {
					return
				}
				attempt++
				continue
			}
			attempt = 0
			if res == outcomeDelivered {
				t.delivered(r.ID)
			} else {
				log.Warn("events: receiver rejected a SET; dropped", "jti", e.JTI, "error", msg)
				t.failed(r.ID, msg)
			}
		case outcomeRetry:
			t.failed(r.ID, msg)
			wait := t.backoff(attempt)
			if retryAfter > wait {
				wait = min(retryAfter, t.maxBackoff)
			}
			log.Warn("events: push delivery failed; will retry", "jti", e.JTI, "error", msg, "retry_in", wait)
			if !t.sleep(ctx, wait) {
				return
			}
			attempt++
		}
	}
}

// push POSTs one SET (RFC 8935 section 2) and classifies the answer.
func (t *Transmitter) push(ctx context.Context, r record, auth, set string) (res outcome, retryAfter time.Duration, msg string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.EndpointURL, strings.NewReader(set))
	if err != nil {
		return outcomeRetry, 0, "build request: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return outcomeRetry, 0, "POST " + r.EndpointURL + ": " + unwrapURLError(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return outcomeDelivered, 0, ""
	case resp.StatusCode == http.StatusBadRequest:
		var se posture.SETErr
		if json.Unmarshal(body, &se) == nil && se.Err != "" {
			m := "receiver rejected the SET: " + truncate(se.Err, 64)
			if se.Description != "" {
				m += ": " + truncate(se.Description, 256)
			}
			return outcomeRejected, 0, m
		}
		// A 400 without an RFC 8935 error is not a verdict on the SET but a receiver that
		// does not speak the protocol (wrong URL, a proxy): keep the SET until it is fixed.
		return outcomeRetry, 0, fmt.Sprintf("receiver answered %s without an RFC 8935 error", resp.Status)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return outcomeRetry, parseRetryAfter(resp.Header.Get("Retry-After")), "receiver answered " + resp.Status
	default:
		// 5xx, and 3xx/401/403/404: the receiver or its configuration is broken, not the SET.
		return outcomeRetry, 0, "receiver answered " + resp.Status
	}
}

// unwrapURLError drops the *url.Error wrapping whose text repeats the method and URL.
func unwrapURLError(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return err.Error()
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
