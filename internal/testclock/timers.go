package testclock

import "time"

// timer is a function AfterFunc runs once the clock reaches at.
type timer struct {
	at time.Time
	f  func()
}

// AfterFunc runs f in its own goroutine once the clock has moved d past now (by Set or
// Advance), like time.AfterFunc on this clock: pass c.AfterFunc where code takes a timer
// function. stop cancels it and reports whether it had not run yet.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.t.Add(d), f: f}
	if c.timers == nil {
		c.timers = map[*timer]struct{}{}
	}
	c.timers[t] = struct{}{}
	c.fireLocked()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, pending := c.timers[t]
		delete(c.timers, t)
		return pending
	}
}

// fireLocked starts the timers that are due; c.mu is held.
func (c *Clock) fireLocked() {
	for t := range c.timers {
		if !t.at.After(c.t) {
			delete(c.timers, t)
			go t.f()
		}
	}
}
