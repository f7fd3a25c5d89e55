// Package auditstream delivers the audit log to the organisation's SIEM: every entry, at least
// once and in order, to each configured sink (syslog over TLS, a JSON Lines file, standard
// output), from a durable per-sink cursor so a restart resumes where delivery stopped. The log
// itself is the queue: a sink that is down never blocks the API; its lag shows in a metric and,
// past a threshold, in an error log line.
//
// Each delivered entry carries its index and leaf hash (RFC 6962: SHA-256 of 0x00 and the
// entry's exact bytes, as golang.org/x/mod/sumdb/tlog computes it), so the SIEM's copy can be
// checked against a signed checkpoint.
package auditstream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/mdmserver/audit"
)

// Source is the audit log as the streamer reads it; *audit.Log is one.
type Source interface {
	Size(ctx context.Context) (int64, error)
	Records(ctx context.Context, from int64, limit int) ([]audit.Record, error)
	Delivered(ctx context.Context, sink string) (int64, error)
	SetDelivered(ctx context.Context, sink string, next int64) error
}

// Sink is one destination. Deliver hands the records over in order and returns only once they
// are written (a file synced, a connection's write done); an error means some may not be, and
// they are delivered again. Deliver is called from one goroutine at a time.
type Sink interface {
	// Name identifies the sink's delivery cursor: renaming a sink starts it from the beginning.
	Name() string
	Deliver(ctx context.Context, recs []audit.Record) error
	Close() error
}

// Streamer delivers the log to its sinks.
type Streamer struct {
	src      Source
	sinks    []Sink
	log      *slog.Logger
	poll     time.Duration
	batch    int
	alertLag int64
	maxWait  time.Duration

	lag       *prometheus.GaugeVec
	delivered *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

// Option configures a Streamer.
type Option func(*Streamer)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Streamer) { s.log = l } }

// WithPollInterval sets how often an idle sink looks for new entries (default 250ms).
func WithPollInterval(d time.Duration) Option {
	return func(s *Streamer) {
		if d > 0 {
			s.poll = d
		}
	}
}

// WithAlertLag sets the lag, in entries, past which a sink's lag is logged as an error (default
// 10,000); it is logged again as recovered once the lag is back under half of it.
func WithAlertLag(n int64) Option {
	return func(s *Streamer) {
		if n > 0 {
			s.alertLag = n
		}
	}
}

// WithMaxRetryWait caps the wait between attempts at a failing sink, which doubles from the
// poll interval (default 30s).
func WithMaxRetryWait(d time.Duration) Option {
	return func(s *Streamer) {
		if d > 0 {
			s.maxWait = d
		}
	}
}

// WithMetrics registers the sinks' lag, deliveries and failures with reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Streamer) {
		s.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hale_audit_sink_lag_entries",
			Help: "Audit entries not yet delivered to the sink."}, []string{"sink"})
		s.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_audit_sink_delivered_total",
			Help: "Audit entries delivered to the sink (an entry delivered again after a failure counts again)."}, []string{"sink"})
		s.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hale_audit_sink_failures_total",
			Help: "Failed deliveries to the sink; the entries are delivered again."}, []string{"sink"})
		reg.MustRegister(s.lag, s.delivered, s.failures)
	}
}

// New returns a Streamer delivering src to sinks, whose names must be unique.
func New(src Source, sinks []Sink, opts ...Option) (*Streamer, error) {
	s := &Streamer{src: src, sinks: sinks, log: slog.New(slog.DiscardHandler), poll: 250 * time.Millisecond,
		batch: 500, alertLag: 10000, maxWait: 30 * time.Second}
	seen := map[string]bool{}
	for _, k := range sinks {
		if k.Name() == "" || seen[k.Name()] {
			return nil, fmt.Errorf("auditstream: sink name %q is empty or used twice", k.Name())
		}
		seen[k.Name()] = true
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Run delivers until ctx ends, each sink on its own, then closes the sinks.
func (s *Streamer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, k := range s.sinks {
		wg.Go(func() {
			defer k.Close()
			s.run(ctx, k)
		})
	}
	wg.Wait()
}

// run is one sink's delivery loop.
func (s *Streamer) run(ctx context.Context, k Sink) {
	name := k.Name()
	log := s.log.With("sink", name)
	wait := s.poll
	next, alerted := int64(-1), false
	for {
		if next < 0 {
			n, err := s.src.Delivered(ctx, name)
			if err != nil {
				log.WarnContext(ctx, "reading the sink's delivery cursor", "err", err)
			} else {
				next = n
			}
		}
		idle := true
		if next >= 0 {
			var err error
			idle, err = s.step(ctx, k, &next, &alerted, log)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if s.failures != nil {
					s.failures.WithLabelValues(name).Inc()
				}
				log.WarnContext(ctx, "audit delivery failed; retrying", "next_index", next, "retry_in", wait, "err", err)
				if !sleep(ctx, wait) {
					return
				}
				wait = min(2*wait, s.maxWait)
				continue
			}
			wait = s.poll
		}
		if idle && !sleep(ctx, s.poll) {
			return
		}
	}
}

// step delivers one batch from *next and moves the cursor; idle reports that there was nothing
// to deliver.
func (s *Streamer) step(ctx context.Context, k Sink, next *int64, alerted *bool, log *slog.Logger) (idle bool, err error) {
	size, err := s.src.Size(ctx)
	if err != nil {
		return true, err
	}
	lag := max(size-*next, 0)
	if s.lag != nil {
		s.lag.WithLabelValues(k.Name()).Set(float64(lag))
	}
	switch {
	case lag > s.alertLag && !*alerted:
		*alerted = true
		log.ErrorContext(ctx, "audit sink is lagging: entries are queued and will be delivered once it accepts them",
			"lag_entries", lag, "alert_lag", s.alertLag, "next_index", *next)
	case lag < s.alertLag/2 && *alerted:
		*alerted = false
		log.InfoContext(ctx, "audit sink caught up", "lag_entries", lag)
	}
	if lag == 0 {
		return true, nil
	}
	recs, err := s.src.Records(ctx, *next, s.batch)
	if err != nil || len(recs) == 0 {
		return true, err
	}
	if err := k.Deliver(ctx, recs); err != nil {
		return false, err
	}
	*next = recs[len(recs)-1].Index + 1
	if s.delivered != nil {
		s.delivered.WithLabelValues(k.Name()).Add(float64(len(recs)))
	}
	// A crash before this commits delivers the batch again: at least once, never a gap.
	if err := s.src.SetDelivered(ctx, k.Name(), *next); err != nil {
		log.WarnContext(ctx, "saving the delivery cursor", "err", err)
	}
	if s.lag != nil {
		s.lag.WithLabelValues(k.Name()).Set(float64(max(size-*next, 0)))
	}
	return false, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
