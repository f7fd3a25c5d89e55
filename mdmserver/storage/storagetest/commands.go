package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testCommands is the contract of commands.Repository, and the commands rules over it: a
// result's state change, cancelling a cleared queue, sealed PINs, and the state counts the
// metrics read.
func testCommands(t *testing.T, open Opener) {
	t.Run("contract", func(t *testing.T) { commandsContract(t, open) })
	t.Run("result state transitions", func(t *testing.T) { commandsResultStates(t, open) })
	t.Run("cancel and unanswered", func(t *testing.T) { commandsCancelAndUnanswered(t, open) })
	t.Run("PINs sealed", func(t *testing.T) { commandsPINs(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { commandsRollback(t, open) })
	t.Run("state counts follow every write", func(t *testing.T) { commandsStateCounts(t, open) })
	t.Run("state counts under concurrent batches", func(t *testing.T) { commandsConcurrentResults(t, open) })
	t.Run("reopen", func(t *testing.T) { commandsReopen(t, open) })
}

// commandsService is the commands service on st, as the server makes it.
func commandsService(st storage.Store) *commands.Service {
	return commands.NewService(storage.Scope(st, func(tx storage.Tx) commands.Tx { return tx }))
}

// saveResult stores res as the result hook does: SaveResult in a Batch, then also (the hook's
// WithResultTx), in the same unit of work, when res was recorded.
func saveResult(st storage.Store, res *commands.Result, also func() error) (saved bool, err error) {
	ctx := context.Background()
	err = st.Batch(ctx, func(tx storage.Tx) error {
		var err error
		if saved, err = commands.SaveResult(ctx, tx.Commands(), res); err != nil || !saved {
			return err
		}
		if also != nil {
			return also()
		}
		return nil
	})
	return saved, err
}

func commandsContract(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	recs := []*commands.Record{
		{UUID: "C2", EnrollmentID: "U1", RequestType: "DeviceLock", State: commands.StatePushed, RequestedBy: "sec",
			CreatedAt: t0, UpdatedAt: t0, PushedAt: t0.Add(time.Second)},
		{UUID: "C1", EnrollmentID: "U1", RequestType: "ProfileList", State: commands.StateQueued, CreatedAt: t0.Add(time.Minute), UpdatedAt: t0},
		{UUID: "C3", EnrollmentID: "U10", RequestType: "SecurityInfo", State: commands.StateQueued, CreatedAt: t0, UpdatedAt: t0},
	}
	res := &commands.Result{EnrollmentID: "U1", CommandUUID: "C2", RequestType: "DeviceLock", Status: "Acknowledged", ReceivedAt: t0.Add(time.Hour)}
	err := st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Commands()
		for _, rec := range recs {
			if err := r.PutRecord(ctx, rec); err != nil {
				return err
			}
		}
		if err := r.PutResult(ctx, res); err != nil {
			return err
		}
		return r.PutSealedPIN(ctx, "C2", []byte("sealed"))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Commands()
		got, err := r.Record(ctx, "U1", "C2")
		if err != nil || !sameJSON(got, recs[0]) {
			t.Errorf("Record = %+v, %v; want %+v", got, err, recs[0])
		}
		got.State = commands.StateError // the caller's copy
		if again, _ := r.Record(ctx, "U1", "C2"); again.State != commands.StatePushed {
			t.Error("changing a returned record changed the stored one")
		}
		if _, err := r.Record(ctx, "U1", "C3"); !errors.Is(err, commands.ErrNotFound) {
			t.Errorf("Record of another enrollment's command: %v, want ErrNotFound", err)
		}
		list, err := r.Records(ctx, "U1")
		if err != nil || len(list) != 2 || list[0].UUID != "C1" || list[1].UUID != "C2" {
			t.Errorf("Records(U1) = %v, %v; want C1, C2 in UUID order", uuids(list), err)
		}
		if list, _ := r.Records(ctx, "U"); len(list) != 0 {
			t.Errorf("Records(U) matched another enrollment's prefix: %v", uuids(list))
		}
		var all []string
		if err := r.EachRecord(ctx, func(rec *commands.Record) error { all = append(all, rec.EnrollmentID+"/"+rec.UUID); return nil }); err != nil {
			t.Error(err)
		}
		if slices.Sort(all); !slices.Equal(all, []string{"U1/C1", "U1/C2", "U10/C3"}) {
			t.Errorf("EachRecord saw %v", all)
		}
		stop := errors.New("stop")
		if err := r.EachRecord(ctx, func(*commands.Record) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("EachRecord did not return fn's error: %v", err)
		}
		gotRes, err := r.Result(ctx, "U1", "C2")
		if err != nil || !sameJSON(gotRes, res) {
			t.Errorf("Result = %+v, %v", gotRes, err)
		}
		if _, err := r.Result(ctx, "U1", "C1"); !errors.Is(err, commands.ErrNotFound) {
			t.Errorf("Result of an unanswered command: %v, want ErrNotFound", err)
		}
		if all, err := r.Results(ctx, "U1"); err != nil || len(all) != 1 || all[0].CommandUUID != "C2" {
			t.Errorf("Results(U1) = %+v, %v", all, err)
		}
		if pin, err := r.SealedPIN(ctx, "C2"); err != nil || string(pin) != "sealed" {
			t.Errorf("SealedPIN = %q, %v", pin, err)
		}
		if _, err := r.SealedPIN(ctx, "C1"); !errors.Is(err, commands.ErrNotFound) {
			t.Errorf("SealedPIN of a command without one: %v, want ErrNotFound", err)
		}
		// A View writes nothing.
		if err := r.PutRecord(ctx, recs[1]); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutRecord in a View: %v, want ErrReadOnly", err)
		}
		if err := r.PutResult(ctx, res); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutResult in a View: %v, want ErrReadOnly", err)
		}
		if err := r.PutSealedPIN(ctx, "C1", []byte("x")); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutSealedPIN in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func uuids(recs []*commands.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.UUID)
	}
	return out
}

// ptr returns a pointer to v, for the optional fields of a parsed result.
func ptr[T any](v T) *T { return &v }

// A result moves its record; a final answer is never rewritten by a late duplicate; a result
// for a command Hale did not send is kept without inventing a record.
func commandsResultStates(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := commandsService(st)
	now := time.Now().UTC()
	rec := &commands.Record{UUID: "C1", EnrollmentID: "U1", RequestType: "SecurityInfo", State: commands.StatePushed, CreatedAt: now, UpdatedAt: now}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	res := &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "NotNow", ReceivedAt: now}
	if _, err := saveResult(st, res, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "U1", "C1"); got.State != commands.StateNotNow {
		t.Fatalf("after NotNow: %s", got.State)
	}
	// The SecurityInfo answer, as parsed from the device's plist.
	res = &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Acknowledged", ReceivedAt: now, RequestType: "SecurityInfo",
		SecurityInfo: &commands.SecurityInfo{HardwareEncryptionCaps: ptr(3), PasscodePresent: ptr(true),
			PasscodeCompliant: ptr(false), PasscodeCompliantWithProfiles: ptr(true)}}
	if _, err := saveResult(st, res, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "U1", "C1")
	if got.State != commands.StateAcknowledged {
		t.Fatalf("after Acknowledged: %s", got.State)
	}
	// A late duplicate answer (the device resent after a lost response) does not rewrite history.
	dup := &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Error", ReceivedAt: now.Add(time.Second)}
	if saved, err := saveResult(st, dup, nil); err != nil || saved {
		t.Fatalf("duplicate answer: saved %v, %v", saved, err)
	}
	if got, _ := s.Get(ctx, "U1", "C1"); got.State != commands.StateAcknowledged {
		t.Fatalf("duplicate answer changed state to %s", got.State)
	}
	stored, err := s.Result(ctx, "U1", "C1")
	if err != nil || stored.SecurityInfo == nil || !*stored.SecurityInfo.PasscodePresent || *stored.SecurityInfo.HardwareEncryptionCaps != 3 {
		t.Fatalf("stored result %+v, %v", stored, err)
	}
	// A result for a command enqueued outside Hale is kept without a record.
	if _, err := saveResult(st, &commands.Result{EnrollmentID: "U1", CommandUUID: "X", Status: "Acknowledged"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "U1", "X"); !errors.Is(err, commands.ErrNotFound) {
		t.Fatalf("record invented for a foreign command: %v", err)
	}
	if all, _ := s.Results(ctx, "U1"); len(all) != 2 {
		t.Fatalf("Results = %d", len(all))
	}
	if list, _ := s.List(ctx, "U1"); len(list) != 1 {
		t.Fatalf("List = %d", len(list))
	}
	if list, _ := s.List(ctx, "U"); len(list) != 0 {
		t.Fatal("prefix of another enrollment id matched")
	}
}

// CancelOpen cancels exactly the unanswered commands of one enrollment; Unanswered finds the
// open commands older than its cutoff; List and Open are oldest first.
func commandsCancelAndUnanswered(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := commandsService(st)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, state := range []commands.State{commands.StateNotNow, commands.StateQueued, commands.StateAcknowledged, commands.StatePushed} {
		// UUIDs in the reverse of creation order, so that oldest first is not key order.
		rec := &commands.Record{UUID: fmt.Sprint("C", 9-i), EnrollmentID: "U1", State: state, CreatedAt: t0.Add(time.Duration(i) * time.Minute)}
		if err := s.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, &commands.Record{UUID: "D1", EnrollmentID: "U2", State: commands.StateQueued, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "U1"); !slices.Equal(uuids(list), []string{"C9", "C8", "C7", "C6"}) {
		t.Errorf("List = %v, want oldest first", uuids(list))
	}
	if open, _ := s.Open(ctx, "U1"); !slices.Equal(uuids(open), []string{"C9", "C8", "C6"}) {
		t.Errorf("Open = %v", uuids(open))
	}
	old, err := s.Unanswered(ctx, t0.Add(2*time.Minute))
	got := uuids(old)
	if slices.Sort(got); err != nil || !slices.Equal(got, []string{"C8", "C9", "D1"}) {
		t.Errorf("Unanswered = %v, %v; want C8, C9, D1 in any order", got, err)
	}
	at := t0.Add(time.Hour)
	cancelled, err := s.CancelOpen(ctx, "U1", "the device enrolled again", at)
	if err != nil || len(cancelled) != 3 {
		t.Fatalf("CancelOpen = %v, %v", uuids(cancelled), err)
	}
	for _, rec := range cancelled {
		if rec.State != commands.StateCancelled || rec.Detail != "the device enrolled again" || !rec.UpdatedAt.Equal(at) {
			t.Errorf("cancelled record %+v", rec)
		}
	}
	if open, _ := s.Open(ctx, "U1"); len(open) != 0 {
		t.Errorf("open after CancelOpen: %v", uuids(open))
	}
	if got, _ := s.Get(ctx, "U1", "C7"); got.State != commands.StateAcknowledged {
		t.Errorf("an answered command was cancelled: %s", got.State)
	}
	if got, _ := s.Get(ctx, "U2", "D1"); got.State != commands.StateQueued {
		t.Errorf("another enrollment's command was cancelled: %s", got.State)
	}
}

// A PIN is stored sealed: it opens only with the key that sealed it and only under its own
// command.
func commandsPINs(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := commandsService(st)
	key, other := sealKeyOf(t, 1), sealKeyOf(t, 2)
	err := st.Update(ctx, func(tx storage.Tx) error { return commands.PutPIN(ctx, tx.Commands(), key, "C1", "123456") })
	if err != nil {
		t.Fatal(err)
	}
	if pin, err := s.PIN(ctx, key, "C1"); err != nil || pin != "123456" {
		t.Fatalf("PIN = %q, %v", pin, err)
	}
	var sealed []byte
	err = st.Update(ctx, func(tx storage.Tx) error {
		var err error
		if sealed, err = tx.Commands().SealedPIN(ctx, "C1"); err != nil {
			return err
		}
		return tx.Commands().PutSealedPIN(ctx, "C2", sealed)
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "123456") {
		t.Errorf("PIN stored in clear: %q", sealed)
	}
	if _, err := s.PIN(ctx, other, "C1"); err == nil || errors.Is(err, commands.ErrNotFound) {
		t.Errorf("PIN opened with another key: %v", err)
	}
	if _, err := s.PIN(ctx, key, "C2"); err == nil || errors.Is(err, commands.ErrNotFound) {
		t.Errorf("PIN copied to another command opened: %v", err)
	}
	if _, err := s.PIN(ctx, key, "C3"); !errors.Is(err, commands.ErrNotFound) {
		t.Errorf("PIN of a command without one: %v, want ErrNotFound", err)
	}
}

// A unit of work that fails after writing a record, a result and a PIN leaves none of them, and
// moves no state count.
func commandsRollback(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := commandsService(st)
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Commands()
		if err := r.PutRecord(ctx, &commands.Record{UUID: "C1", EnrollmentID: "U1", State: commands.StateQueued}); err != nil {
			return err
		}
		if err := r.PutResult(ctx, &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Acknowledged"}); err != nil {
			return err
		}
		if err := r.PutSealedPIN(ctx, "C1", []byte("sealed")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if _, err := s.Get(ctx, "U1", "C1"); !errors.Is(err, commands.ErrNotFound) {
		t.Errorf("record of a failed unit of work: %v", err)
	}
	if _, err := s.Result(ctx, "U1", "C1"); !errors.Is(err, commands.ErrNotFound) {
		t.Errorf("result of a failed unit of work: %v", err)
	}
	if _, err := s.PIN(ctx, sealKeyOf(t, 1), "C1"); !errors.Is(err, commands.ErrNotFound) {
		t.Errorf("PIN of a failed unit of work: %v", err)
	}
	if got, _ := s.StateCounts(ctx); got["queued"] != 0 {
		t.Errorf("a failed unit of work moved the counts: %v", got)
	}
}

// Records, results and PINs are there after a reopen.
func commandsReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	s := commandsService(st)
	key := sealKeyOf(t, 1)
	rec := &commands.Record{UUID: "C1", EnrollmentID: "U1", RequestType: "EraseDevice", State: commands.StatePushed,
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	res := &commands.Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Acknowledged", ReceivedAt: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)}
	if _, err := saveResult(st, res, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(ctx, func(tx storage.Tx) error { return commands.PutPIN(ctx, tx.Commands(), key, "C1", "654321") }); err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	s = commandsService(st)
	if got, err := s.Get(ctx, "U1", "C1"); err != nil || got.State != commands.StateAcknowledged || !got.AnsweredAt.Equal(res.ReceivedAt) {
		t.Errorf("record after reopen: %+v, %v", got, err)
	}
	if got, err := s.Result(ctx, "U1", "C1"); err != nil || !sameJSON(got, res) {
		t.Errorf("result after reopen: %+v, %v", got, err)
	}
	if pin, err := s.PIN(ctx, key, "C1"); err != nil || pin != "654321" {
		t.Errorf("PIN after reopen: %q, %v", pin, err)
	}
}
