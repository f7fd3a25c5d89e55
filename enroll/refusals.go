package enroll

import (
	"container/list"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a Refusals tally.
const (
	// DefaultRefusalWindow is how long one source's refusals are gathered into one summary.
	DefaultRefusalWindow = time.Minute
	// DefaultRefusalSources caps how many sources have an open window at once.
	DefaultRefusalSources = 10000
)

// OverflowSource is the Source of the summary that gathers the refusals of every source that
// found the tally full.
const OverflowSource = "other sources"

// Refusals tallies the requests refused on the unauthenticated enrollment endpoints per source,
// so that a flood of them is recorded as one summary per source and window (the audit entry the
// server writes for it) rather than one fsynced audit entry per request. It is safe for
// concurrent use.
//
// A source's window opens with its first refusal and closes DefaultRefusalWindow later;
// Due hands out the closed ones, Drain all (at shutdown). Sources are keyed as the Limiter keys
// them: an IPv4 address, or an IPv6 /64. Memory is bounded: at most maxSources windows are open;
// while the tally is full, refusals from sources without a window are gathered in one more
// summary, from OverflowSource, so none goes uncounted.
type Refusals struct {
	window     time.Duration
	maxSources int

	mu       sync.Mutex
	open     map[netip.Prefix]*list.Element // value: *openWindow
	order    *list.List                     // open windows by start, oldest first
	overflow *RefusalSummary
}

// openWindow is a source's window that has not closed yet.
type openWindow struct {
	key netip.Prefix
	sum RefusalSummary
}

// RefusalSummary is one source's refused requests in one window.
type RefusalSummary struct {
	// Source is the address (IPv4) or /64 (IPv6) the requests came from, "unknown" when it did
	// not parse, or OverflowSource.
	Source string
	// Start and End bound the window: Start is the first refusal; End is Start plus the window,
	// or when the window was drained early.
	Start, End time.Time
	// Last is when the last refusal was counted.
	Last time.Time
	// Count is how many requests were refused.
	Count int
	// Endpoints and Reasons count the refusals by endpoint and by reason.
	Endpoints, Reasons map[string]int
	// FirstRequestID and LastRequestID name the first and the last request in the logs.
	FirstRequestID, LastRequestID string
}

// RefusalsOption configures a Refusals tally.
type RefusalsOption func(*Refusals)

// WithRefusalWindow sets how long one source's refusals are gathered into one summary.
func WithRefusalWindow(d time.Duration) RefusalsOption {
	return func(r *Refusals) {
		if d > 0 {
			r.window = d
		}
	}
}

// WithRefusalSources caps how many sources have an open window at once.
func WithRefusalSources(n int) RefusalsOption {
	return func(r *Refusals) {
		if n > 0 {
			r.maxSources = n
		}
	}
}

// NewRefusals returns an empty tally.
func NewRefusals(opts ...RefusalsOption) *Refusals {
	r := &Refusals{window: DefaultRefusalWindow, maxSources: DefaultRefusalSources,
		open: make(map[netip.Prefix]*list.Element), order: list.New()}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Window returns the tally's window.
func (r *Refusals) Window() time.Duration { return r.window }

// Add counts one refused request from addr (an IP or "host:port", as in
// http.Request.RemoteAddr) to endpoint for reason, at now. Endpoint and reason must come from
// small fixed sets: each distinct value is kept per open window.
func (r *Refusals) Add(addr, endpoint, reason, requestID string, now time.Time) {
	key := addrKey(addr)
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *RefusalSummary
	switch el, ok := r.open[key]; {
	case ok:
		s = &el.Value.(*openWindow).sum
	case len(r.open) < r.maxSources:
		w := &openWindow{key: key, sum: newSummary(sourceName(key), now, r.window)}
		r.open[key] = r.order.PushBack(w)
		s = &w.sum
	default:
		if r.overflow == nil {
			o := newSummary(OverflowSource, now, r.window)
			r.overflow = &o
		}
		s = r.overflow
	}
	s.Count++
	s.Endpoints[endpoint]++
	s.Reasons[reason]++
	if s.FirstRequestID == "" {
		s.FirstRequestID = requestID
	}
	s.LastRequestID, s.Last = requestID, now
}

func newSummary(source string, now time.Time, window time.Duration) RefusalSummary {
	return RefusalSummary{Source: source, Start: now, End: now.Add(window), Last: now,
		Endpoints: map[string]int{}, Reasons: map[string]int{}}
}

// Due removes and returns the summaries whose window closed at or before now, oldest first.
func (r *Refusals) Due(now time.Time) []RefusalSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RefusalSummary
	for el := r.order.Front(); el != nil; el = r.order.Front() {
		w := el.Value.(*openWindow)
		if w.sum.End.After(now) {
			break // windows close in the order they opened
		}
		out = append(out, w.sum)
		r.remove(el)
	}
	if r.overflow != nil && !r.overflow.End.After(now) {
		out = append(out, *r.overflow)
		r.overflow = nil
	}
	return out
}

// Drain removes and returns every summary, closing open windows at now.
func (r *Refusals) Drain(now time.Time) []RefusalSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RefusalSummary
	for el := r.order.Front(); el != nil; el = r.order.Front() {
		w := el.Value.(*openWindow)
		w.sum.End = minTime(w.sum.End, now)
		out = append(out, w.sum)
		r.remove(el)
	}
	if r.overflow != nil {
		r.overflow.End = minTime(r.overflow.End, now)
		out = append(out, *r.overflow)
		r.overflow = nil
	}
	return out
}

// Len returns how many sources have an open window, the overflow not counted.
func (r *Refusals) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

// remove drops an open window; r.mu is held.
func (r *Refusals) remove(el *list.Element) {
	delete(r.open, el.Value.(*openWindow).key)
	r.order.Remove(el)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sourceName writes a source key as an operator reads it: the IPv4 address, the IPv6 /64.
func sourceName(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "unknown"
	case p.Addr().Is4():
		return p.Addr().String()
	}
	return p.String()
}

// FormatCounts writes counts as "name=n" pairs sorted by name, comma-separated, for a log line
// or an audit detail.
func FormatCounts(counts map[string]int) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(counts)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + strconv.Itoa(counts[k]))
	}
	return b.String()
}
