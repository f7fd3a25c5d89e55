// Package measure holds the small helpers Hale's benchmark harnesses share to turn samples
// into the figures they report.
package measure

import (
	"fmt"
	"os"
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

// Harness is the part of testing.TB that Hale's fixture builders (testpki, apitest) take, for
// harnesses that run outside a test: any failure prints and ends the program.
type Harness struct{ Name string }

// Helper does nothing; it is there for the interfaces.
func (Harness) Helper() {}

// Fatal prints args and exits.
func (h Harness) Fatal(args ...any) { h.exit(fmt.Sprint(args...)) }

// Fatalf prints the formatted message and exits.
func (h Harness) Fatalf(format string, args ...any) { h.exit(fmt.Sprintf(format, args...)) }

// Errorf prints the formatted message and exits: a harness has no later point to fail at.
func (h Harness) Errorf(format string, args ...any) { h.exit(fmt.Sprintf(format, args...)) }

func (h Harness) exit(msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", h.Name, msg)
	os.Exit(1)
}
