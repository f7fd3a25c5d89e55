package events

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery result classes, the "result" label of hale_ssf_deliveries_total.
const (
	resultDelivered  = "delivered"          // push answered 2xx, or a poll acknowledged it
	resultRejected   = "rejected"           // the receiver said the SET is invalid: dropped
	resultRefused    = "refused"            // push answered an error status: retried
	resultConnection = "connection_failed"  // no answer (refused, reset, timeout, DNS): retried
	resultTLS        = "tls_error"          // the TLS handshake failed: retried
	resultNotAllowed = "destination_denied" // the endpoint is not a permitted destination
)

// metrics are the transmitter's Prometheus metrics.
type metrics struct {
	results *prometheus.CounterVec
}

// newMetrics registers the delivery counter and the outbox collector of t with reg.
func newMetrics(t *Transmitter, reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hale_ssf_deliveries_total",
		Help: "Security Event Token delivery attempts by method (push, poll) and result class.",
	}, []string{"method", "result"})}
	reg.MustRegister(m.results, &outboxCollector{t: t})
	return m
}

// result counts n SETs of one method with one result.
func (m *metrics) result(method, result string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.results.WithLabelValues(method, result).Add(float64(n))
}

var outboxDesc = prometheus.NewDesc("hale_ssf_outbox_events",
	"Security Event Tokens waiting in the outbox, per stream: not yet delivered or acknowledged.",
	[]string{"stream"}, nil)

// outboxCollector reads the outbox depth of every stream at scrape time, so the gauge can never
// drift from what is stored.
type outboxCollector struct{ t *Transmitter }

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- outboxDesc }

// Collect implements prometheus.Collector: one sample per stream, zero included.
func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	var depth map[string]int
	ctx := context.Background()
	err := c.t.st.View(ctx, func(tx Tx) error {
		r := tx.Events()
		recs, err := r.Streams(ctx)
		if err != nil {
			return err
		}
		if depth, err = r.QueueLens(ctx); err != nil {
			return err
		}
		for _, rec := range recs {
			if _, ok := depth[rec.ID]; !ok {
				depth[rec.ID] = 0 // every stream has a sample, an empty outbox too
			}
		}
		return nil
	})
	if err != nil {
		c.t.log.Error("events: cannot read the outbox for metrics", "err", err)
		return
	}
	for id, n := range depth {
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(n), id)
	}
}
