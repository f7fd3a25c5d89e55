package mdmserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/storage"
)

// The enrollment endpoints whose anonymous refusals are tallied, the "endpoint" label of
// hale_enroll_refusals_total and the audit summary's endpoints.
const (
	refusedAppleProfile = "apple_profile" // GET /enroll/apple/{token}
	refusedAgent        = "agent"         // POST /agent/v1/enroll
	refusedSCEP         = "scep"          // /scep PKIOperation
)

// actionEnrollRefused is the audit action of one source's refused enrollment requests in one
// window.
const actionEnrollRefused = "enrollment.refused"

// newRefusalCounter registers the counter of refused enrollment requests with reg.
func newRefusalCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hale_enroll_refusals_total",
		Help: "Anonymous requests refused on the enrollment endpoints, by endpoint and reason.",
	}, []string{"endpoint", "reason"})
	reg.MustRegister(c)
	return c
}

// refuseEnrollment counts an anonymous request refused on an enrollment endpoint: in the
// metrics and the log at once, in the audit log as part of its source's summary when the
// window closes (auditRefusals). A refusal costs no write of its own, so a flood of them
// cannot fill the audit log or the disk's fsync budget.
func (s *Server) refuseEnrollment(r *http.Request, endpoint, reason string) {
	s.tallyRefusal(r.Context(), r.RemoteAddr, endpoint, reason)
}

func (s *Server) tallyRefusal(ctx context.Context, source, endpoint, reason string) {
	id := httpmw.RequestID(ctx)
	s.refusalCount.WithLabelValues(endpoint, reason).Inc()
	s.log.InfoContext(ctx, "enrollment request refused", "endpoint", endpoint, "reason", reason,
		"remote", source, "request_id", id)
	s.refusals.Add(source, endpoint, reason, id, time.Now())
}

// refusalReason names why the enrollment store refused a token or challenge; ok is false for
// an error that is not a refusal (the store failed).
func refusalReason(err error) (reason string, ok bool) {
	for _, c := range []struct {
		err  error
		name string
	}{{enroll.ErrUnknown, "unknown"}, {enroll.ErrInvalid, "unknown"}, {enroll.ErrExpired, "expired"},
		{enroll.ErrRevoked, "revoked"}, {enroll.ErrUsed, "used"}, {enroll.ErrWrongPlatform, "wrong_platform"},
		{enroll.ErrInUse, "in_use"}} {
		if errors.Is(err, c.err) {
			return c.name, true
		}
	}
	return "", false
}

// auditRefusals writes one audit entry per summary, all in one transaction: one fsync however
// many sources there were. An entry that cannot be written is logged with its counts, so no
// count is lost silently.
func (s *Server) auditRefusals(sums []enroll.RefusalSummary) {
	if len(sums) == 0 {
		return
	}
	ctx := context.Background()
	err := s.store.Update(ctx, func(tx storage.Tx) error {
		for _, sum := range sums {
			if _, err := audit.Append(ctx, tx.Audit(), refusalEntry(sum, s.refusals.Window())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, sum := range sums {
			s.log.Error("AUDIT APPEND FAILED: refused enrollment requests", "source", sum.Source, "count", sum.Count,
				"reasons", enroll.FormatCounts(sum.Reasons), "window_start", sum.Start, "window_end", sum.End, "err", err)
		}
	}
}

// refusalEntry is the audit entry of one source's refusals in one window.
func refusalEntry(sum enroll.RefusalSummary, window time.Duration) audit.Entry {
	return audit.Entry{Actor: "anonymous", Source: sum.Source, Action: actionEnrollRefused, Outcome: audit.OutcomeDenied,
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

// runRefusalAudit writes the summaries of closed windows every tick until ctx is done. Close
// writes the windows still open.
func (s *Server) runRefusalAudit(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.auditRefusals(s.refusals.Due(now))
		}
	}
}

type remoteAddrKey struct{}

// withRemoteAddr gives h's request context the caller's address, for code below h that sees
// only the context (the SCEP challenge check).
func withRemoteAddr(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), remoteAddrKey{}, r.RemoteAddr)))
	})
}

// remoteAddr returns the caller's address withRemoteAddr put in ctx, or "".
func remoteAddr(ctx context.Context) string {
	a, _ := ctx.Value(remoteAddrKey{}).(string)
	return a
}
