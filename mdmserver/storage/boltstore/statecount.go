package boltstore

import (
	"fmt"
	"maps"
	"sync"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// stateCounts keeps in memory how many records of a bucket are in each state, so a metric can
// read the counts at scrape time without scanning the bucket (which may hold a command per device
// and query for 100,000 devices). The store counts the records once when it opens, then each
// repository write reports its state change inside the transaction that makes it: the change
// counts when that transaction commits, and never when it rolls back (or when db.Batch retries
// it). It is the bbolt backend's answer to a repository's StateCounts; a database with indexes
// would count with a query instead.
type stateCounts struct {
	mu sync.Mutex
	n  map[string]int64
}

// newStateCounts returns counts that report each of states, at zero until counted.
func newStateCounts(states ...string) *stateCounts {
	c := &stateCounts{n: make(map[string]int64, len(states))}
	for _, s := range states {
		c.n[s] = 0
	}
	return c
}

// add counts n more records in state at once, outside any transaction: the count at open.
func (c *stateCounts) add(state string, n int64) {
	c.mu.Lock()
	c.n[state] += n
	c.mu.Unlock()
}

// move records in tx that one record leaves state from for state to; "" is no state (from: a
// new record, to: a deleted one). It counts when tx commits.
func (c *stateCounts) move(tx *bbolt.Tx, from, to string) {
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

// snapshot returns the count of every state. Commit handlers of concurrent transactions run
// after bbolt released its writer lock, in either order, so a count can dip below zero for an
// instant; it is reported as zero.
func (c *stateCounts) snapshot() map[string]int64 {
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

// tallies are the state counts the store keeps, one per bucket of kvstore.CountedBuckets, by
// bucket name.
type tallies map[string]*stateCounts

// countStates counts the records of every counted bucket once, at open, before anything else
// can write.
func (s *Store) countStates() error {
	s.tallies = tallies{}
	err := s.db.View(func(btx *bbolt.Tx) error {
		kv := &kvTx{tx: btx, st: s}
		for _, name := range kvstore.CountedBuckets {
			n, err := kvstore.CountStates(kv, name)
			if err != nil {
				return err
			}
			c := newStateCounts()
			for state, k := range n {
				c.add(state, k)
			}
			s.tallies[string(name)] = c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: counting command states: %w", err)
	}
	return nil
}
