package statecount

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
	c := New("queued", "done")
	c.Add("queued", 2)
	if err := db.Update(func(tx *bbolt.Tx) error {
		c.Move(tx, "queued", "done")
		c.Move(tx, "", "queued")
		c.Move(tx, "done", "done") // no change
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := db.Update(func(tx *bbolt.Tx) error {
		c.Move(tx, "queued", "done")
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// db.Batch runs a failing function again on its own; only the committed run counts.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_ = db.Batch(func(tx *bbolt.Tx) error {
				c.Move(tx, "", "queued")
				if i == 3 {
					return boom
				}
				return nil
			})
		})
	}
	wg.Wait()
	got := c.Snapshot()
	if got["queued"] != 2+7 || got["done"] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want queued 9, done 1", got)
	}
}
