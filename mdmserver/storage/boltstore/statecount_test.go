package boltstore

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

func TestMoveCountsOnlyCommits(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := newStateCounts("queued", "done")
	c.add("queued", 2)
	if err := db.Update(func(tx *bbolt.Tx) error {
		c.move(tx, "queued", "done")
		c.move(tx, "", "queued")
		c.move(tx, "done", "done") // no change
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := db.Update(func(tx *bbolt.Tx) error {
		c.move(tx, "queued", "done")
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// db.Batch runs a failing function again on its own; only the committed run counts.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_ = db.Batch(func(tx *bbolt.Tx) error {
				c.move(tx, "", "queued")
				if i == 3 {
					return boom
				}
				return nil
			})
		})
	}
	wg.Wait()
	got := c.snapshot()
	if got["queued"] != 2+7 || got["done"] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want queued 9, done 1", got)
	}
}
