// Package statecount keeps in memory how many records of a bbolt store are in each state, so a
// metric can read the counts at scrape time without scanning the store (which may hold a
// command per device and query for 100,000 devices). A store counts its records once when it
// opens, then reports each state change inside the transaction that makes it: the change counts
// when that transaction commits, and never when it rolls back (or when db.Batch retries it).
package statecount

import (
	"maps"
	"sync"

	"go.etcd.io/bbolt"
)

// Counts are records per state. The zero value is not usable; make one with New. It is safe for
// concurrent use.
type Counts struct {
	mu sync.Mutex
	n  map[string]int64
}

// New returns counts that report each of states, at zero until counted.
func New(states ...string) *Counts {
	c := &Counts{n: make(map[string]int64, len(states))}
	for _, s := range states {
		c.n[s] = 0
	}
	return c
}

// Add counts n more records in state at once, outside any transaction: the count at open.
func (c *Counts) Add(state string, n int64) {
	c.mu.Lock()
	c.n[state] += n
	c.mu.Unlock()
}

// Move records in tx that one record leaves state from for state to; "" is no state (from: a
// new record, to: a deleted one). It counts when tx commits.
func (c *Counts) Move(tx *bbolt.Tx, from, to string) {
	if from == to {
		return
	}
	tx.OnCommit(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if from != "" {
			c.n[from]--
		}
		if to != "" {
			c.n[to]++
		}
	})
}

// Snapshot returns the count of every state. Commit handlers of concurrent transactions may run
// in either order, so a count can dip below zero for an instant; it is reported as zero.
func (c *Counts) Snapshot() map[string]int64 {
	c.mu.Lock()
	out := maps.Clone(c.n)
	c.mu.Unlock()
	for s, n := range out {
		if n < 0 {
			out[s] = 0
		}
	}
	return out
}
