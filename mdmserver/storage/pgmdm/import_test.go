package pgmdm_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/micromdm/nanomdm/mdm"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
)

// sealedFor seals cmd's body as boltstore's queue stores it (purpose "mdm-command/"+uuid).
func sealedFor(key *seal.Key, uuid string, raw []byte) []byte {
	return key.Seal("mdm-command/"+uuid, raw)
}

// TestImportQueue imports bodies sealed elsewhere, unopened: each enrollment gets its commands in
// the order given, a NotNow answer is kept (skipped right after a NotNow, offered again later),
// a command queued for two enrollments is stored once, and every body opens with the same key.
func TestImportQueue(t *testing.T) {
	db := openDB(t)
	key := masterKey(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(key))
	d1, d2 := enroll(t, st, "UDID-IMPORT-ONE-000000"), enroll(t, st, "UDID-IMPORT-TWO-000000")
	a, b, c := lockCommand(t, "A-UUID", "111111"), lockCommand(t, "B-UUID", "222222"), lockCommand(t, "C-UUID", "333333")
	imp := func(id string, cmd *mdm.Command, notNow bool) pgmdm.ImportedCommand {
		return pgmdm.ImportedCommand{EnrollmentID: id, UUID: cmd.CommandUUID, RequestType: cmd.Command.RequestType,
			Sealed: sealedFor(key, cmd.CommandUUID, cmd.Raw), NotNow: notNow}
	}
	err := st.ImportQueue(context.Background(), []pgmdm.ImportedCommand{
		imp(d1.udid, a, false), imp(d1.udid, b, true), imp(d1.udid, c, false), imp(d2.udid, a, false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := st.Count(context.Background()); err != nil || c != (pgmdm.Counts{Enrollments: 2, Queued: 4}) {
		t.Fatalf("counts %+v %v, want 2 enrollments and 4 queued", c, err)
	}
	if body := storedBody(t, db, "A-UUID"); strings.Contains(body, "111111") {
		t.Fatal("the imported body is stored in clear")
	}
	got := d1.expect("", "Idle", "A-UUID")
	if !bytes.Equal(got.Raw, a.Raw) {
		t.Fatalf("the imported body opened to\n%s", got.Raw)
	}
	d1.expect("A-UUID", "Acknowledged", "B-UUID")
	d1.expect("B-UUID", "NotNow", "C-UUID")
	d1.expect("C-UUID", "Acknowledged", "B-UUID")
	d1.expect("B-UUID", "Acknowledged", "")
	d2.expect("", "Idle", "A-UUID")

	// A command queued after the import comes after the imported ones.
	enqueue(t, st, lockCommand(t, "D-UUID", "444444"), d2.udid)
	d2.expect("A-UUID", "Acknowledged", "D-UUID")
}

// TestImportQueueFailsClosed: a body sealed for another command imports (it is not opened) but
// is never sent; an enrollment that does not exist fails the whole import.
func TestImportQueueFailsClosed(t *testing.T) {
	db := openDB(t)
	key := masterKey(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(key))
	d := enroll(t, st, "UDID-IMPORT-BAD-000000")
	a := lockCommand(t, "A-UUID", "111111")
	err := st.ImportQueue(context.Background(), []pgmdm.ImportedCommand{
		{EnrollmentID: d.udid, UUID: "A-UUID", RequestType: "DeviceLock", Sealed: sealedFor(key, "other", a.Raw)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cmd, err := d.report("", "Idle"); err == nil || cmd != nil {
		t.Fatalf("a body sealed for another command was handed out: %v %v", cmd, err)
	}
	err = st.ImportQueue(context.Background(), []pgmdm.ImportedCommand{
		{EnrollmentID: d.udid, UUID: "B-UUID", RequestType: "DeviceLock", Sealed: sealedFor(key, "B-UUID", a.Raw)},
		{EnrollmentID: "nobody", UUID: "C-UUID", RequestType: "DeviceLock", Sealed: sealedFor(key, "C-UUID", a.Raw)},
	})
	if err == nil {
		t.Fatal("an import for an unknown enrollment succeeded")
	}
	if c, _ := st.Count(context.Background()); c.Queued != 1 {
		t.Fatalf("a failed import left %d queued, want the 1 from before", c.Queued)
	}
}

// TestImportUnlockToken keeps an unlock token the replayed TokenUpdate did not carry, and never
// replaces one the device has.
func TestImportUnlockToken(t *testing.T) {
	db := openDB(t)
	st := newStorage(t, db)
	d := enroll(t, st, "UDID-IMPORT-UNLOCK-000")
	ctx := context.Background()
	for _, tok := range []string{"first", "second"} {
		if err := st.ImportUnlockToken(ctx, d.udid, []byte(tok)); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	if err := db.QueryRow(`SELECT unlock_token FROM devices WHERE id = $1`, d.udid).Scan(&got); err != nil || string(got) != "first" {
		t.Fatalf("unlock token %q %v, want the first one", got, err)
	}
}
