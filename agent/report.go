package agent

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/policies"
)

// collectTimeout bounds one posture collection.
const collectTimeout = 2 * time.Minute

// nonceMaxAge is how long a nonce is used before a fresh one is fetched: the server honours one
// for 10 minutes, so one older than this is likely to be refused.
const nonceMaxAge = 9 * time.Minute

// Bounds on what one report may carry, so it stays well under the server's 256 KiB limit.
const (
	maxReportErrors = 32
	maxErrorLen     = 512
)

// pendingReport is the one report waiting to be sent. A newer collection replaces it, so an
// outage costs one report's memory, however long it lasts.
type pendingReport struct {
	report Report
	sum    [32]byte
}

// reportLoop collects posture on an interval with jitter, sends it when it changed since the
// last sent report or when the server-told interval elapsed, and retries with backoff, keeping
// only the latest unsent report.
func (a *Agent) reportLoop(ctx context.Context) {
	interval := a.clampInterval("", a.id.ReportInterval)
	if a.id.ReportInterval <= 0 {
		interval = a.clampInterval("60s", 0)
	}
	var (
		pending     *pendingReport
		lastSent    [32]byte
		haveSent    bool
		dueAt       time.Time
		failures    int
		retryAt     time.Time
		nonce       string
		nonceAt     time.Time
		nextCollect = time.Now()
	)
	for {
		wake := nextCollect
		if pending != nil && retryAt.Before(wake) {
			wake = retryAt
		}
		if !sleep(ctx, time.Until(wake)) {
			return
		}
		now := time.Now()
		if !now.Before(nextCollect) {
			p, errs := a.safeCollect(ctx)
			if ctx.Err() != nil {
				return
			}
			sum := postureSum(p)
			if pending != nil || !haveSent || sum != lastSent || !now.Before(dueAt) {
				pending = &pendingReport{report: a.newReport(p, errs), sum: sum}
				if failures == 0 {
					retryAt = now
				}
			}
			nextCollect = now.Add(jitter(min(a.collectEvery, interval)))
		}
		if pending == nil || now.Before(retryAt) {
			continue
		}
		resp, err := a.sendReport(ctx, &pending.report, &nonce, &nonceAt)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			retryAt = time.Now().Add(a.backoff(failures))
			a.log.Warn("posture report failed; keeping the latest report to retry", "err", err, "retry_at", retryAt, "failures", failures)
			a.emit(Event{Kind: "report-failed", Err: err})
			continue
		}
		lastSent, haveSent = pending.sum, true
		pending, failures = nil, 0
		if pi := a.policyInterval(); pi > 0 {
			interval = pi
		}
		interval = a.clampInterval(resp.NextReportIn, interval)
		if err := a.refreshPolicy(ctx, resp.PolicyETag); err != nil {
			a.log.Warn("keeping the current agent policy", "err", err)
		}
		dueAt = time.Now().Add(jitter(interval))
		nextCollect = minTime(nextCollect, dueAt)
		a.emit(Event{Kind: "report-sent"})
		a.warnUser(ctx, resp)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// safeCollect runs the collector, turning a panic into a report error: a broken collector must
// not kill the loop.
func (a *Agent) safeCollect(ctx context.Context) (p *policies.Posture, errs []CollectorError) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("posture collector panicked", "panic", v, "stack", string(debug.Stack()))
			p, errs = nil, []CollectorError{{Collector: "agent", Error: fmt.Sprintf("collector panicked: %v", v)}}
		}
	}()
	// Collectors bound themselves; this bounds a custom Collector that does not.
	ctx, cancel := context.WithTimeout(ctx, collectTimeout)
	defer cancel()
	p, errs = a.collect(ctx)
	return p, errs
}

// newReport stamps a collected posture with the next sequence number. The sequence is persisted
// so it keeps increasing across restarts.
func (a *Agent) newReport(p *policies.Posture, errs []CollectorError) Report {
	if p == nil {
		p = &policies.Posture{}
	}
	if len(errs) > maxReportErrors {
		errs = errs[:maxReportErrors]
	}
	for i := range errs {
		if len(errs[i].Error) > maxErrorLen {
			errs[i].Error = errs[i].Error[:maxErrorLen]
		}
	}
	a.seqMu.Lock()
	a.seq++
	seq := a.seq
	a.seqMu.Unlock()
	if err := a.store.SaveSequence(seq); err != nil {
		a.log.Warn("could not persist the report sequence", "err", err)
	}
	collected := p.ReportedAt
	if collected.IsZero() {
		collected = time.Now().UTC()
	}
	return Report{Sequence: int64(seq), CollectedAt: collected, Posture: p, Errors: errs, AgentVersion: buildinfo.String()}
}

// sendReport posts r with a fresh single-use nonce. A nonce is never reused, even when the
// request failed (the server may have consumed it); a 409 nonce-invalid fetches a new nonce and
// retries once, as the contract says.
func (a *Agent) sendReport(ctx context.Context, r *Report, nonce *string, nonceAt *time.Time) (*reportResponse, error) {
	resp, err := a.trySendReport(ctx, r, nonce, nonceAt)
	if s := problemStatus(err); s == http.StatusUnauthorized || s == http.StatusForbidden {
		err = fmt.Errorf("the server refused this device's certificate (revoked or unknown device?): %w", err)
	}
	return resp, err
}

func (a *Agent) trySendReport(ctx context.Context, r *Report, nonce *string, nonceAt *time.Time) (*reportResponse, error) {
	for attempt := 0; ; attempt++ {
		if *nonce == "" || time.Since(*nonceAt) > nonceMaxAge {
			var nr nonceResponse
			if err := a.client.do(ctx, a.requestTimeout, http.MethodGet, "/agent/v1/nonce", nil, &nr); err != nil {
				return nil, fmt.Errorf("fetching a report nonce: %w", err)
			}
			*nonce, *nonceAt = nr.Nonce, time.Now()
			// A nonce that the server says expires sooner is treated as older.
			if left := time.Until(nr.ExpiresAt); !nr.ExpiresAt.IsZero() && left < nonceMaxAge {
				*nonceAt = time.Now().Add(left - nonceMaxAge)
			}
		}
		r.Nonce, *nonce = *nonce, ""
		var resp reportResponse
		err := a.client.do(ctx, a.requestTimeout, http.MethodPost, "/agent/v1/report", r, &resp)
		if err != nil {
			if problemCode(err) == "nonce-invalid" && attempt == 0 {
				continue
			}
			return nil, err
		}
		if resp.Nonce != "" {
			*nonce, *nonceAt = resp.Nonce, time.Now()
		}
		return &resp, nil
	}
}

// postureSum hashes the posture's values, ignoring when they were observed, so that two
// collections of an unchanged device compare equal.
func postureSum(p *policies.Posture) [32]byte {
	if p == nil {
		return sha256.Sum256(nil)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return sha256.Sum256([]byte(err.Error()))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return sha256.Sum256(b)
	}
	delete(m, "reported_at")
	for _, v := range m {
		if claim, ok := v.(map[string]any); ok {
			delete(claim, "observed_at")
		}
	}
	b, _ = json.Marshal(m) // map keys are sorted: deterministic
	return sha256.Sum256(b)
}

var errWipeDone = errors.New("agent: wipe done")
