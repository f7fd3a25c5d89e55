package events

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Transmitter.
type Option func(*Transmitter)

// WithLogger sets the logger for delivery failures and rejected SETs.
func WithLogger(l *slog.Logger) Option {
	return func(t *Transmitter) {
		if l != nil {
			t.log = l
		}
	}
}

// WithClock sets the clock for iat, event timestamps and stream creation times (tests).
func WithClock(now func() time.Time) Option {
	return func(t *Transmitter) {
		if now != nil {
			t.now = now
		}
	}
}

// WithRootCAs sets the roots push delivery trusts instead of the system's (receivers with
// certificates from a private CA).
func WithRootCAs(roots *x509.CertPool) Option { return func(t *Transmitter) { t.rootCAs = roots } }

// WithAllowList names the non-public destinations push delivery may connect to anyway. Without
// it, delivery reaches only public addresses that are not this machine's.
func WithAllowList(a *AllowList) Option { return func(t *Transmitter) { t.guard.allow = a } }

// WithResolver replaces the DNS lookup of push delivery (tests: a name that resolves to an
// inside address). What it returns is checked like any other address.
func WithResolver(lookup func(ctx context.Context, host string) ([]netip.Addr, error)) Option {
	return func(t *Transmitter) {
		if lookup != nil {
			t.guard.lookup = lookup
		}
	}
}

// WithCaller tells the stream API who is calling: the credential that owns what it creates and
// what else it may read or delete. Without it no request owns or may read anything.
func WithCaller(fn func(*http.Request) Caller) Option {
	return func(t *Transmitter) {
		if fn != nil {
			t.caller = fn
		}
	}
}

// WithMinVerificationInterval sets how long a receiver must wait between verification requests
// for one stream (default 5s; SSF min_verification_interval): each one writes a SET.
func WithMinVerificationInterval(d time.Duration) Option {
	return func(t *Transmitter) {
		if d >= 0 {
			t.minVerify = d
		}
	}
}

// WithRegisterer registers the transmitter's metrics (outbox depth per stream, delivery results
// by class) with reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(t *Transmitter) { t.metrics = newMetrics(t, reg) }
}

// WithBackoff sets the bounds of the exponential backoff between push retries (default 1s to
// 5m). Each wait is jittered so that receivers coming back are not hit in lockstep.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(t *Transmitter) {
		if minWait > 0 {
			t.minBackoff = minWait
		}
		if maxWait >= t.minBackoff {
			t.maxBackoff = maxWait
		}
	}
}

// WithPollWait sets how long a poll with returnImmediately false waits for a SET (default 30s).
func WithPollWait(d time.Duration) Option {
	return func(t *Transmitter) {
		if d >= 0 {
			t.pollWait = d
		}
	}
}
