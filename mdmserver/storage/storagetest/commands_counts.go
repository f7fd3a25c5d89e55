package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/storage"
)

// recountCommands counts the stored records per state the slow way, every state listed, for
// comparison with the counts the metrics read.
func recountCommands(t *testing.T, st storage.Store) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, s := range commands.States {
		got[string(s)] = 0
	}
	ctx := context.Background()
	err := st.View(ctx, func(tx storage.Tx) error {
		return tx.Commands().EachRecord(ctx, func(rec *commands.Record) error {
			got[string(rec.State)]++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The state counts follow every kind of write, a failed unit of work moves nothing, and a store
// opened again on the same data counts the same.
func commandsStateCounts(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	s := commandsService(st)
	check := func(step string) {
		t.Helper()
		got, err := s.StateCounts(ctx)
		if want := recountCommands(t, st); err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: counts %v, %v; stored %v", step, got, err, want)
		}
	}
	check("empty")
	now := time.Now().UTC()
	for i := range 4 {
		if err := s.Put(ctx, &commands.Record{UUID: fmt.Sprint("C", i), EnrollmentID: "U1", State: commands.StateQueued, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	// Put over an existing record replaces its state.
	if err := s.Put(ctx, &commands.Record{UUID: "C0", EnrollmentID: "U1", State: commands.StatePushed, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	check("put")
	if _, err := s.Update(ctx, "U1", "C1", func(r *commands.Record) { r.State = commands.StatePushed }); err != nil {
		t.Fatal(err)
	}
	check("update")
	if _, err := saveResult(st, &commands.Result{EnrollmentID: "U1", CommandUUID: "C0", Status: "Acknowledged", ReceivedAt: now}, nil); err != nil {
		t.Fatal(err)
	}
	// A result whose transaction fails moves nothing.
	boom := errors.New("boom")
	if _, err := saveResult(st, &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Error", ReceivedAt: now},
		func() error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	check("results")
	if _, err := s.CancelOpen(ctx, "U1", "re-enrolled", now); err != nil {
		t.Fatal(err)
	}
	check("cancel")
	if got, _ := s.StateCounts(ctx); got["cancelled"] != 3 || got["acknowledged"] != 1 || got["queued"] != 0 {
		t.Fatalf("counts %v", got)
	}
	before, _ := s.StateCounts(ctx)
	st = Reopen(t, open, st, dir)
	if got, err := commandsService(st).StateCounts(ctx); err != nil || !maps.Equal(got, before) {
		t.Fatalf("reopened: %v, %v; was %v", got, err, before)
	}
}

// Many devices' results share batched units of work, some of which fail and are run again: the
// counts still equal what is stored (run under -race).
func commandsConcurrentResults(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := commandsService(st)
	const devices = 16
	for i := range devices {
		if err := s.Put(ctx, &commands.Record{UUID: "C", EnrollmentID: fmt.Sprint("U", i), State: commands.StatePushed}); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	for i := range devices {
		wg.Go(func() {
			status := []string{"Acknowledged", "Error", "NotNow"}[i%3]
			var also func() error
			if i%4 == 0 {
				also = func() error { return boom } // this device's result fails: it is not stored
			}
			res := &commands.Result{EnrollmentID: fmt.Sprint("U", i), CommandUUID: "C", Status: status, ReceivedAt: time.Now().UTC()}
			if _, err := saveResult(st, res, also); err != nil && !errors.Is(err, boom) {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := s.StateCounts(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.StateCounts(ctx)
	if want := recountCommands(t, st); err != nil || !maps.Equal(got, want) {
		t.Fatalf("counts %v, %v; stored %v", got, err, want)
	}
	if got["pushed"] != devices/4 {
		t.Errorf("pushed = %d, want the %d devices whose result failed", got["pushed"], devices/4)
	}
}
