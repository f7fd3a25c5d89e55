package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpmw"
)

// ActionEnrollRefused is the audit action of one source's refused enrollment requests in one
// window.
const ActionEnrollRefused = "enrollment.refused"

// EnrollGate guards the anonymous enrollment endpoints (the Apple enrollment profile, SCEP, the
// agent's enrollment), which all share it: a source is rate-limited across all of them, so a
// token cannot be guessed by brute force, and what they refuse is tallied per source. A refusal
// is counted in the metrics (hale_enroll_refusals_total, by endpoint and reason) and logged at
// once, and goes on the audit record as part of its source's summary when the source's window
// closes (AuditDue, Run) or the server stops (AuditAll). A refusal costs no write of its own, so
// a flood of them cannot fill the audit log or the disk's fsync budget.
type EnrollGate struct {
	limiter  *enroll.Limiter
	refusals *enroll.Refusals
	count    *prometheus.CounterVec
	store    audit.Store
	log      *slog.Logger
}

// NewEnrollGate returns a gate that limits sources with limiter, writes the refusal summaries to
// the audit log on st, and registers its counter with reg.
func NewEnrollGate(limiter *enroll.Limiter, st audit.Store, reg prometheus.Registerer, log *slog.Logger) *EnrollGate {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hale_enroll_refusals_total",
		Help: "Anonymous requests refused on the enrollment endpoints, by endpoint and reason.",
	}, []string{"endpoint", "reason"})
	reg.MustRegister(c)
	return &EnrollGate{limiter: limiter, refusals: enroll.NewRefusals(), count: c, store: st, log: log}
}

// Allow reports whether r's source may try to enroll now on endpoint. When it may not, Allow has
// answered 429 and counted the refusal.
func (g *EnrollGate) Allow(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	if g.limiter.Allow(r.RemoteAddr) {
		return true
	}
	g.Tally(r.Context(), r.RemoteAddr, endpoint, "rate_limited")
	w.Header().Set("Retry-After", "5")
	problem.Error(w, r, http.StatusTooManyRequests, "rate-limited", "too many enrollment attempts from this address; wait and retry")
	return false
}

// TokenRefused answers a refused enrollment token: 401 with a reason, counted. Which of
// unknown, expired, revoked or used it was is said: a guesser learns nothing from it (the token
// space is 256 bits), an IT admin learns what to do.
func (g *EnrollGate) TokenRefused(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	reason, ok := refusalReason(err)
	if !ok {
		reason = "unknown"
	}
	g.Tally(r.Context(), r.RemoteAddr, endpoint, reason)
	problem.Error(w, r, http.StatusUnauthorized, "enrollment-token-invalid",
		"the enrollment token is "+strings.ReplaceAll(reason, "_", " ")+"; ask IT for a new one")
}

// Refused counts err against source when it refuses a token or challenge, and reports whether
// it did; an error that is no refusal (the store failed) is not counted.
func (g *EnrollGate) Refused(ctx context.Context, source, endpoint string, err error) bool {
	reason, ok := refusalReason(err)
	if ok {
		g.Tally(ctx, source, endpoint, reason)
	}
	return ok
}

// Tally counts one refusal of source on endpoint for reason.
func (g *EnrollGate) Tally(ctx context.Context, source, endpoint, reason string) {
	id := httpmw.RequestID(ctx)
	g.count.WithLabelValues(endpoint, reason).Inc()
	g.log.InfoContext(ctx, "enrollment request refused", "endpoint", endpoint, "reason", reason,
		"remote", source, "request_id", id)
	g.refusals.Add(source, endpoint, reason, id, time.Now())
}

// refusalReason names why the enrollment store refused a token or challenge; ok is false for
// an error that is not a refusal (the store failed).
func refusalReason(err error) (reason string, ok bool) {
	for _, c := range []struct {
		err  error
		name string
	}{{enroll.ErrUnknown, "unknown"}, {enroll.ErrInvalid, "unknown"}, {enroll.ErrExpired, "expired"},
		{enroll.ErrRevoked, "revoked"}, {enroll.ErrExhausted, "exhausted"}, {enroll.ErrUsed, "used"}, {enroll.ErrWrongPlatform, "wrong_platform"},
		{enroll.ErrInUse, "in_use"}} {
		if errors.Is(err, c.err) {
			return c.name, true
		}
	}
	return "", false
}

// Window is how long a source's refusals are summed into one audit entry.
func (g *EnrollGate) Window() time.Duration { return g.refusals.Window() }

// AuditDue writes the summaries of the windows closed at now.
func (g *EnrollGate) AuditDue(now time.Time) { g.audit(g.refusals.Due(now)) }

// AuditAll writes the summaries of every window, closed or not: at shutdown, so the counts go
// on the record rather than with the process.
func (g *EnrollGate) AuditAll(now time.Time) { g.audit(g.refusals.Drain(now)) }

// Run writes the summaries of closed windows every tick until ctx is done.
func (g *EnrollGate) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.AuditDue(now)
		}
	}
}

// audit writes one audit entry per summary, all in one transaction: one fsync however many
// sources there were. An entry that cannot be written is logged with its counts, so no count is
// lost silently.
func (g *EnrollGate) audit(sums []enroll.RefusalSummary) {
	if len(sums) == 0 {
		return
	}
	ctx := context.Background()
	err := g.store.Update(ctx, func(tx audit.Tx) error {
		for _, sum := range sums {
			if _, err := audit.Append(ctx, tx.Audit(), refusalEntry(sum, g.refusals.Window())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, sum := range sums {
			g.log.Error("AUDIT APPEND FAILED: refused enrollment requests", "source", sum.Source, "count", sum.Count,
				"reasons", enroll.FormatCounts(sum.Reasons), "window_start", sum.Start, "window_end", sum.End, "err", err)
		}
	}
}

// refusalEntry is the audit entry of one source's refusals in one window.
func refusalEntry(sum enroll.RefusalSummary, window time.Duration) audit.Entry {
	return audit.Entry{Actor: "anonymous", Source: sum.Source, Action: ActionEnrollRefused, Outcome: audit.OutcomeDenied,
		Details: map[string]string{
			"count":            strconv.Itoa(sum.Count),
			"reasons":          enroll.FormatCounts(sum.Reasons),
			"endpoints":        enroll.FormatCounts(sum.Endpoints),
			"window":           window.String(),
			"window_start":     sum.Start.UTC().Format(time.RFC3339Nano),
			"window_end":       sum.End.UTC().Format(time.RFC3339Nano),
			"last":             sum.Last.UTC().Format(time.RFC3339Nano),
			"first_request_id": sum.FirstRequestID,
			"last_request_id":  sum.LastRequestID,
		}}
}

// Endpoint is the gate as one endpoint sees it: every refusal counted under its name.
func (g *EnrollGate) Endpoint(name string) EnrollEndpoint { return EnrollEndpoint{g: g, name: name} }

// EnrollEndpoint is an EnrollGate bound to one endpoint (the agent's enrollment uses it).
type EnrollEndpoint struct {
	g    *EnrollGate
	name string
}

// Admit reports whether r's source may try to enroll now; when it may not, Admit has answered
// 429 and counted the refusal.
func (e EnrollEndpoint) Admit(w http.ResponseWriter, r *http.Request) bool {
	return e.g.Allow(w, r, e.name)
}

// Refused counts r as refused for reason (invalid_request, csr_refused).
func (e EnrollEndpoint) Refused(r *http.Request, reason string) {
	e.g.Tally(r.Context(), r.RemoteAddr, e.name, reason)
}

// TokenRefused counts r as refused for the enrollment token error err and answers 401.
func (e EnrollEndpoint) TokenRefused(w http.ResponseWriter, r *http.Request, err error) {
	e.g.TokenRefused(w, r, e.name, err)
}

// DecodeError answers an enrollment body that package enroll could not decode (EnrollDecodeError).
func (e EnrollEndpoint) DecodeError(w http.ResponseWriter, r *http.Request, err error) {
	EnrollDecodeError(e.g.log, w, r, err)
}

// EnrollDecodeError answers an error of package enroll's decoding or validation of a request:
// 413 for a body too large, 400 for an invalid one, 500 (logged) for anything else.
func EnrollDecodeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, enroll.ErrTooLarge):
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", err.Error())
	case errors.Is(err, enroll.ErrInvalid):
		problem.BadRequest(w, r, err.Error())
	default:
		Internal(log, w, r, err)
	}
}
