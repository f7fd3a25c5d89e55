package enroll

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
)

func TestLimiterBurstAndRefill(t *testing.T) {
	clk := testclock.New(time.Unix(1000, 0))
	l := NewLimiter(1, 3, WithLimiterClock(clk.Now))
	for i := range 3 {
		if !l.Allow("192.0.2.1:5555") {
			t.Fatalf("request %d denied within burst", i)
		}
	}
	if l.Allow("192.0.2.1:6666") {
		t.Fatal("burst exceeded but allowed (port must not matter)")
	}
	if !l.Allow("192.0.2.2:5555") {
		t.Fatal("another address shares the bucket")
	}
	clk.Advance(time.Second)
	if !l.Allow("192.0.2.1") || l.Allow("192.0.2.1") {
		t.Fatal("refill of one token per second not honoured")
	}
	// IPv6 addresses in one /64 share a bucket; another /64 does not.
	for range 3 {
		l.Allow("[2001:db8:1:2::1]:443")
	}
	if l.Allow("[2001:db8:1:2:ffff::9]:443") {
		t.Error("same /64 got a fresh bucket")
	}
	if !l.Allow("[2001:db8:1:3::1]:443") {
		t.Error("different /64 limited")
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	if l.Allow("[::ffff:192.0.2.1]:1") {
		t.Error("mapped address escaped its IPv4 bucket")
	}
	// Garbage shares one bucket rather than passing freely.
	for range 3 {
		l.Allow("not an address")
	}
	if l.Allow("also garbage") {
		t.Error("unparseable addresses are not limited")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clk := testclock.New(time.Unix(1000, 0))
	l := NewLimiter(0.001, 1, WithMaxEntries(100), WithLimiterClock(clk.Now))
	l.Allow("198.51.100.1") // spends its only token
	for i := range 1000 {
		l.Allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if l.Len() > 100 {
			t.Fatalf("limiter tracks %d addresses, cap 100", l.Len())
		}
	}
	// The address seen least recently was evicted and starts over; recently seen ones were kept.
	if !l.Allow("198.51.100.1") {
		t.Error("evicted address still limited")
	}
	if l.Allow("10.0.3.231") {
		t.Error("recent address forgotten")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(0, 50)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if l.Allow("203.0.113.7:1") {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("allowed %d of 800 with burst 50 and no refill", allowed)
	}
}

func TestLimiterClockStepBack(t *testing.T) {
	clk := testclock.New(time.Unix(1000, 0))
	l := NewLimiter(1, 1, WithLimiterClock(clk.Now))
	l.Allow("192.0.2.9")
	clk.Advance(-time.Hour)
	if l.Allow("192.0.2.9") {
		t.Error("clock step back refilled the bucket")
	}
	clk.Advance(time.Hour + time.Second)
	if !l.Allow("192.0.2.9") {
		t.Error("bucket did not refill after the clock recovered")
	}
}
