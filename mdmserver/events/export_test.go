package events

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// What the external tests (package events_test, which run the Transmitter on a real store) need
// of the package's insides.

// Limits and lists the tests check against.
const (
	MaxStreamsPerOwner = maxStreamsPerOwner
	MaxMaxEvents       = maxMaxEvents
)

// Supported are the event types a stream can be delivered.
var Supported = supported

// Delivery result classes of hale_ssf_deliveries_total.
const (
	ResultDelivered  = resultDelivered
	ResultRejected   = resultRejected
	ResultNotAllowed = resultNotAllowed
)

// MustAllow parses an allow-list or fails the test.
func MustAllow(t testing.TB, entries ...string) *AllowList { return mustAllow(t, entries...) }

// Deliveries is the delivery counter of one method and result class.
func (t *Transmitter) Deliveries(method, result string) prometheus.Counter {
	return t.metrics.results.WithLabelValues(method, result)
}

// Backoff is the wait before retry number attempt.
func (t *Transmitter) Backoff(attempt int) time.Duration { return t.backoff(attempt) }

// PollWaiting reports whether something waits for the stream's next SET.
func (t *Transmitter) PollWaiting(streamID string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.signals[streamID]
	return ok
}

// Reconciles counts how often Run has reconciled its deliverers with the stored streams.
func (t *Transmitter) Reconciles() int64 { return t.reconciles.Load() }
