package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testAndroid is the contract of android.Repository: one binding, devices found by name and by
// ID, message IDs seen once, pruned by age, all durable.
func testAndroid(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		if _, err := tx.Android().Binding(ctx); !errors.Is(err, android.ErrNotBound) {
			t.Errorf("Binding before any: %v, want ErrNotBound", err)
		}
		if _, err := tx.Android().DeviceID(ctx, "enterprises/E/devices/x"); !errors.Is(err, android.ErrNotFound) {
			t.Errorf("DeviceID unknown: %v", err)
		}
		return nil
	})
	b := &android.Binding{Enterprise: "enterprises/LC01", ServiceAccount: "sa@p.iam.gserviceaccount.com",
		SealedKey: []byte("sealed"), Topic: "projects/p/topics/t", BoundAt: t0, BoundBy: "admin"}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Android()
		if err := r.PutBinding(ctx, b); err != nil {
			return err
		}
		if err := r.PutDevice(ctx, "enterprises/LC01/devices/a", "d_0000000000000001"); err != nil {
			return err
		}
		if err := r.PutOperation(ctx, "enterprises/LC01/devices/a/operations/1", android.Operation{DeviceID: "d_0000000000000001", CommandID: "c_1"}); err != nil {
			return err
		}
		if err := r.PutOperation(ctx, "enterprises/LC01/devices/a/operations/2", android.Operation{DeviceID: "d_0000000000000001", CommandID: "c_2"}); err != nil {
			return err
		}
		if err := r.DeleteOperation(ctx, "enterprises/LC01/devices/a/operations/2"); err != nil {
			return err
		}
		if err := r.DeleteOperation(ctx, "enterprises/LC01/devices/a/operations/none"); err != nil {
			t.Errorf("DeleteOperation of an unknown one: %v", err)
		}
		for i, id := range []string{"m1", "m2"} {
			fresh, err := r.SeeMessage(ctx, id, t0.Add(time.Duration(i)*time.Hour))
			if err != nil || !fresh {
				t.Errorf("SeeMessage(%s) first = %v, %v", id, fresh, err)
			}
		}
		if fresh, err := r.SeeMessage(ctx, "m1", t0.Add(5*time.Hour)); err != nil || fresh {
			t.Errorf("SeeMessage again = %v, %v; want not fresh", fresh, err)
		}
		return nil
	})
	// A failed unit of work leaves nothing.
	_ = st.Update(context.Background(), func(tx storage.Tx) error {
		_, _ = tx.Android().SeeMessage(context.Background(), "m3", t0)
		return errors.New("roll back")
	})
	st = Reopen(t, open, st, dir)
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Android()
		got, err := r.Binding(ctx)
		if err != nil || !sameJSON(got, b) {
			t.Errorf("Binding after reopen = %+v, %v", got, err)
		}
		if id, err := r.DeviceID(ctx, "enterprises/LC01/devices/a"); err != nil || id != "d_0000000000000001" {
			t.Errorf("DeviceID = %q, %v", id, err)
		}
		if ops, err := r.Operations(ctx); err != nil || len(ops) != 1 || ops["enterprises/LC01/devices/a/operations/1"].CommandID != "c_1" {
			t.Errorf("Operations = %v, %v", ops, err)
		}
		if all, err := r.Devices(ctx); err != nil || len(all) != 1 || all["enterprises/LC01/devices/a"] != "d_0000000000000001" {
			t.Errorf("Devices = %v, %v", all, err)
		}
		if n, err := r.DeviceName(ctx, "d_0000000000000001"); err != nil || n != "enterprises/LC01/devices/a" {
			t.Errorf("DeviceName = %q, %v", n, err)
		}
		if seen, err := r.Seen(ctx, "m2"); err != nil || !seen {
			t.Errorf("Seen(m2) = %v, %v", seen, err)
		}
		if seen, _ := r.Seen(ctx, "m9"); seen {
			t.Error("Seen of an unknown ID")
		}
		if fresh, _ := r.SeeMessage(ctx, "m2", t0); fresh {
			t.Error("a seen message ID is fresh after reopen")
		}
		if fresh, _ := r.SeeMessage(ctx, "m3", t0.Add(10*time.Hour)); !fresh {
			t.Error("a rolled-back message ID was kept")
		}
		if n, err := r.PruneMessages(ctx, t0.Add(30*time.Minute)); err != nil || n != 1 {
			t.Errorf("PruneMessages = %d, %v; want 1 (m1)", n, err)
		}
		if fresh, _ := r.SeeMessage(ctx, "m1", t0); !fresh {
			t.Error("a pruned message ID is still seen")
		}
		return nil
	})
}
