// Package measure holds the small helpers Hale's benchmark harnesses share to turn samples
// into the figures they report.
package measure

import (
	"slices"
	"time"
)

// Percentile returns the p-quantile (0 to 1) of sorted latencies, or 0 when there are none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// Millis is d in milliseconds, for tables.
func Millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// Summary is the usual description of a set of latencies.
type Summary struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarize sorts lat in place and describes it.
func Summarize(lat []time.Duration) Summary {
	slices.Sort(lat)
	s := Summary{N: len(lat), P50: Percentile(lat, 0.50), P99: Percentile(lat, 0.99)}
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	return s
}
