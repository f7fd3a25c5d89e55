package enroll

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultLimiterEntries caps how many source addresses a Limiter tracks.
const DefaultLimiterEntries = 10000

// Limiter is a per-source-address token bucket that slows down token and challenge guessing on
// the unauthenticated enrollment endpoints. It is safe for concurrent use.
//
// Memory is bounded: at most maxEntries addresses are tracked, and when full the address seen
// least recently is forgotten. IPv6 sources are grouped by /64, the block one host usually
// controls, so that a single attacker cannot mint a fresh bucket per request.
type Limiter struct {
	rate       float64 // tokens per second
	burst      float64
	maxEntries int
	now        func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*list.Element // value: *bucket
	lru     *list.List                     // front: most recently seen
}

type bucket struct {
	key    netip.Prefix
	tokens float64
	last   time.Time
}

// LimiterOption configures a Limiter.
type LimiterOption func(*Limiter)

// WithMaxEntries caps the number of tracked addresses (default DefaultLimiterEntries).
func WithMaxEntries(n int) LimiterOption {
	return func(l *Limiter) {
		if n > 0 {
			l.maxEntries = n
		}
	}
}

// WithLimiterClock sets the limiter's clock (tests).
func WithLimiterClock(now func() time.Time) LimiterOption {
	return func(l *Limiter) { l.now = now }
}

// NewLimiter returns a limiter that allows burst requests at once per address and refills at rate
// requests per second. A burst below 1 is treated as 1, a negative rate as 0 (no refill).
func NewLimiter(rate float64, burst int, opts ...LimiterOption) *Limiter {
	l := &Limiter{
		rate:       max(rate, 0),
		burst:      float64(max(burst, 1)),
		maxEntries: DefaultLimiterEntries,
		now:        time.Now,
		entries:    make(map[netip.Prefix]*list.Element),
		lru:        list.New(),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow reports whether a request from addr (an IP or "host:port", as in http.Request.RemoteAddr)
// may proceed, and spends a token if so. Unparseable addresses share one bucket, so they are
// limited rather than waved through.
func (l *Limiter) Allow(addr string) bool {
	key := addrKey(addr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if el, ok := l.entries[key]; ok {
		b = el.Value.(*bucket)
		l.lru.MoveToFront(el)
		// A clock step backwards refills nothing and does not move last back.
		if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
			b.tokens = min(l.burst, b.tokens+elapsed*l.rate)
			b.last = now
		}
	} else {
		for l.lru.Len() >= l.maxEntries {
			oldest := l.lru.Back()
			delete(l.entries, oldest.Value.(*bucket).key)
			l.lru.Remove(oldest)
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		l.entries[key] = l.lru.PushFront(b)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Len returns how many addresses are tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// addrKey maps an address to its bucket key: the IPv4 address, or the IPv6 /64.
func addrKey(addr string) netip.Prefix {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{} // the shared bucket of unparseable addresses
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
