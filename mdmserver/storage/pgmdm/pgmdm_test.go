package pgmdm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service/nanomdm"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/pgsql"
	"github.com/micromdm/nanomdm/test/e2e"
)

// openDB returns a database/sql handle on a fresh database with nanomdm's schema applied, from
// a pgx pool as Hale's PostgreSQL store hands it to pgmdm.
func openDB(t testing.TB) *sql.DB {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	// Registered after NewDatabase's cleanup, so it runs first: the pool is closed before the
	// database is dropped.
	t.Cleanup(func() { db.Close(); pool.Close() })
	if _, err := db.Exec(pgsql.Schema); err != nil {
		t.Fatalf("applying nanomdm's schema.sql: %v", err)
	}
	return db
}

// masterKey returns a fresh random master key.
func masterKey(t testing.TB) *seal.Key {
	t.Helper()
	k, err := seal.New(randomBytes(t, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newStorage(t testing.TB, db *sql.DB, opts ...pgmdm.Option) *pgmdm.Storage {
	t.Helper()
	st, err := pgmdm.New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewNeedsDatabase(t *testing.T) {
	if _, err := pgmdm.New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

// nanomdmDir returns the nanomdm module directory this package builds against, whose test/e2e
// reads its testdata relative to itself.
func nanomdmDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/micromdm/nanomdm").Output()
	if err != nil {
		t.Fatalf("locating the nanomdm module (needs the go tool on PATH): %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go list returned no directory for github.com/micromdm/nanomdm (is the module downloaded?)")
	}
	return dir
}

// TestNanoMDME2E runs nanomdm's own conformance suite on pgmdm with bodies sealed, both with
// Hale's default (answered commands deleted) and with nanomdm's (kept), as nanomdm's pgsql
// tests run it both ways.
func TestNanoMDME2E(t *testing.T) {
	pgtest.ServerURL(t) // skip (or fail under CI) here, not in each subtest
	key := masterKey(t)
	dir := filepath.Join(nanomdmDir(t), "test", "e2e")
	for _, c := range []struct {
		name string
		opts []pgmdm.Option
	}{
		{"sealed", []pgmdm.Option{pgmdm.WithCommandSealer(key)}},
		{"sealed-kept-results", []pgmdm.Option{pgmdm.WithCommandSealer(key), pgmdm.WithKeptResults()}},
		{"clear", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := newStorage(t, openDB(t), c.opts...)
			t.Chdir(dir)
			e2e.TestE2E(t, context.Background(), st)
		})
	}
}

// device is an enrolled Apple device talking to nanomdm's service on the storage.
type device struct {
	t    testing.TB
	udid string
	svc  *nanomdm.Service
}

// enroll enrolls a device through nanomdm's service (Authenticate, then TokenUpdate), as a
// device's check-ins do.
func enroll(t testing.TB, st storage.ServiceStore, udid string) *device {
	t.Helper()
	d := &device{t: t, udid: udid, svc: nanomdm.New(st)}
	e := mdm.Enrollment{UDID: udid}
	auth := &mdm.Authenticate{Enrollment: e, SerialNumber: "C02" + udid[:6], Raw: []byte("<?xml version=\"1.0\"?><plist><dict/></plist>")}
	auth.MessageType.MessageType = "Authenticate"
	if err := d.svc.Authenticate(d.request(), auth); err != nil {
		t.Fatal(err)
	}
	tu := &mdm.TokenUpdate{Enrollment: e, Raw: []byte("<?xml version=\"1.0\"?><plist><dict/></plist>")}
	tu.MessageType.MessageType = "TokenUpdate"
	tu.Push = mdm.Push{PushMagic: "magic-" + udid, Topic: "com.apple.mgmt.External.hale", Token: randomBytes(t, 32)}
	if err := d.svc.TokenUpdate(d.request(), tu); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *device) request() *mdm.Request { return mdm.NewRequestWithContext(context.Background(), nil) }

// report sends a command report (Idle when uuid is empty) and returns the command the server
// answers with, or the error it fails with.
func (d *device) report(uuid, status string) (*mdm.Command, error) {
	res := &mdm.CommandResults{Enrollment: mdm.Enrollment{UDID: d.udid}, CommandUUID: uuid, Status: status,
		Raw: []byte("<?xml version=\"1.0\"?><plist><dict/></plist>")}
	return d.svc.CommandAndReportResults(d.request(), res)
}

// expect reports and fails unless the answer is the command uuid (none when uuid is "").
func (d *device) expect(reportUUID, status, uuid string) *mdm.Command {
	d.t.Helper()
	cmd, err := d.report(reportUUID, status)
	if err != nil {
		d.t.Fatalf("report %s %s: %v", reportUUID, status, err)
	}
	switch {
	case uuid == "" && cmd != nil:
		d.t.Fatalf("got command %s, want none", cmd.CommandUUID)
	case uuid != "" && cmd == nil:
		d.t.Fatalf("got no command, want %s", uuid)
	case uuid != "" && cmd.CommandUUID != uuid:
		d.t.Fatalf("got command %s, want %s", cmd.CommandUUID, uuid)
	}
	return cmd
}

// lockCommand returns a Mac's DeviceLock with its PIN, encoded as Hale's dispatcher does.
func lockCommand(t testing.TB, uuid, pin string) *mdm.Command {
	t.Helper()
	raw := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
	<key>Command</key><dict>
		<key>PIN</key><string>` + pin + `</string>
		<key>RequestType</key><string>DeviceLock</string>
	</dict>
	<key>CommandUUID</key><string>` + uuid + `</string>
</dict></plist>
`)
	cmd, err := mdm.DecodeCommand(raw)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func enqueue(t testing.TB, st storage.CommandEnqueuer, cmd *mdm.Command, ids ...string) {
	t.Helper()
	if _, err := st.EnqueueCommand(context.Background(), ids, cmd); err != nil {
		t.Fatalf("enqueue %s: %v", cmd.CommandUUID, err)
	}
}

// storedBody reads a command's body as it is in the database.
func storedBody(t *testing.T, db *sql.DB, uuid string) string {
	t.Helper()
	var body string
	if err := db.QueryRow(`SELECT command FROM commands WHERE command_uuid = $1`, uuid).Scan(&body); err != nil {
		t.Fatalf("reading command %s: %v", uuid, err)
	}
	return body
}

func setStoredBody(t *testing.T, db *sql.DB, uuid, body string) {
	t.Helper()
	if _, err := db.Exec(`UPDATE commands SET command = $2 WHERE command_uuid = $1`, uuid, body); err != nil {
		t.Fatal(err)
	}
}

func TestCommandSealedAtRest(t *testing.T) {
	db := openDB(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(masterKey(t)))
	d := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-000000000001")
	const pin = "483920"
	cmd := lockCommand(t, "LOCK-1", pin)
	orig := bytes.Clone(cmd.Raw)
	enqueue(t, st, cmd, d.udid)
	if !bytes.Equal(cmd.Raw, orig) {
		t.Fatal("EnqueueCommand changed the caller's command body")
	}

	body := storedBody(t, db, "LOCK-1")
	for _, clear := range []string{pin, "<plist", "PIN", "DeviceLock"} {
		if strings.Contains(body, clear) {
			t.Errorf("the stored body contains %q in clear:\n%s", clear, body)
		}
	}
	// Nothing else in the database holds the body either (the view joins the same column).
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM view_queue WHERE command LIKE '%' || $1 || '%'`, pin).Scan(&n); err != nil || n != 0 {
		t.Errorf("view_queue shows the PIN in %d rows (err %v)", n, err)
	}

	got := d.expect("", "Idle", "LOCK-1")
	if !bytes.Equal(got.Raw, orig) || got.Command.RequestType != "DeviceLock" {
		t.Fatalf("the device got %q (%s), want the original body", got.Raw, got.Command.RequestType)
	}
	// NotNow keeps it queued and sealed; it comes back on the next Idle, then goes on Acknowledged.
	d.expect("LOCK-1", "NotNow", "")
	if got := d.expect("", "Idle", "LOCK-1"); !bytes.Equal(got.Raw, orig) {
		t.Fatal("the body changed after NotNow")
	}
	d.expect("LOCK-1", "Acknowledged", "")
	// Hale's default: an answered command is gone from nanomdm's tables, sealed PIN and all.
	if err := db.QueryRow(`SELECT count(*) FROM commands`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d commands left after the acknowledgement (err %v)", n, err)
	}
}

// TestSealedBodyFailsClosed: a body that does not open for its command is an error, and the
// device is sent nothing, never the envelope or another command's body.
func TestSealedBodyFailsClosed(t *testing.T) {
	db := openDB(t)
	key := masterKey(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(key))
	a := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-00000000000A")
	b := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-00000000000B")
	enqueue(t, st, lockCommand(t, "LOCK-A", "111111"), a.udid)
	enqueue(t, st, lockCommand(t, "LOCK-B", "222222"), b.udid)
	sealedA, sealedB := storedBody(t, db, "LOCK-A"), storedBody(t, db, "LOCK-B")
	clearA := string(lockCommand(t, "LOCK-A", "111111").Raw)

	tamper := func(s string) string { // flip one base64 character in the sealed bytes
		i := strings.Index(s, `v="1">`) + len(`v="1">`) + 20
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for _, c := range []struct{ name, body, want string }{
		{"another command's body", sealedB, "cannot be opened"},
		{"tampered", tamper(sealedA), "cannot be opened"},
		{"truncated", sealedA[:len(sealedA)-10], "truncated"},
		{"not base64", strings.Replace(sealedA, `v="1">`, `v="1">*`, 1), "base64"},
		{"in clear", clearA, "in clear"},
	} {
		t.Run(c.name, func(t *testing.T) {
			setStoredBody(t, db, "LOCK-A", c.body)
			cmd, err := a.report("", "Idle")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "LOCK-A") {
				t.Fatalf("got error %v, want one naming LOCK-A and %q", err, c.want)
			}
			if cmd != nil {
				t.Fatalf("the device was sent %s: %q", cmd.CommandUUID, cmd.Raw)
			}
		})
	}

	// Under another master key, or with no key at all, the sealed body is not sent either.
	setStoredBody(t, db, "LOCK-A", sealedA)
	other := &device{t: t, udid: a.udid, svc: nanomdm.New(newStorage(t, db, pgmdm.WithCommandSealer(masterKey(t))))}
	if cmd, err := other.report("", "Idle"); err == nil || cmd != nil {
		t.Fatalf("another key: got %v, %v; want an error and no command", cmd, err)
	}
	unsealed := &device{t: t, udid: a.udid, svc: nanomdm.New(newStorage(t, db))}
	if cmd, err := unsealed.report("", "Idle"); err == nil || !strings.Contains(err.Error(), "no sealer") || cmd != nil {
		t.Fatalf("no key: got %v, %v; want an error and no command", cmd, err)
	}
	// The right key still opens it: nothing above consumed the command.
	if got := a.expect("", "Idle", "LOCK-A"); string(got.Raw) != clearA {
		t.Fatalf("got %q", got.Raw)
	}
}

func TestEnqueueRejects(t *testing.T) {
	db := openDB(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(masterKey(t)))
	d := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-000000000002")
	ok := lockCommand(t, "OK-1", "1")
	for _, c := range []struct {
		name string
		ids  []string
		edit func(*mdm.Command)
	}{
		{"no enrollment", nil, func(*mdm.Command) {}},
		{"empty enrollment id", []string{""}, func(*mdm.Command) {}},
		{"no uuid", []string{d.udid}, func(c *mdm.Command) { c.CommandUUID = "" }},
		{"long uuid", []string{d.udid}, func(c *mdm.Command) { c.CommandUUID = strings.Repeat("U", 128) }},
		{"no body", []string{d.udid}, func(c *mdm.Command) { c.Raw = nil }},
		{"not XML", []string{d.udid}, func(c *mdm.Command) { c.Raw = []byte("bplist00") }},
		{"an envelope", []string{d.udid}, func(c *mdm.Command) {
			c.Raw = []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<hale-sealed-command v=\"1\">AAAA</hale-sealed-command>\n")
		}},
		{"too large", []string{d.udid}, func(c *mdm.Command) {
			c.Raw = append([]byte("<?xml"), make([]byte, pgmdm.MaxCommandSize)...)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := *ok
			c.edit(&cmd)
			if _, err := st.EnqueueCommand(context.Background(), c.ids, &cmd); err == nil {
				t.Fatal("enqueued")
			}
		})
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM commands`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d commands stored after rejected enqueues (err %v)", n, err)
	}
	// Without a sealer the schema's own checks hold and the body is stored as it is.
	clear := newStorage(t, db)
	enqueue(t, clear, ok, d.udid)
	if body := storedBody(t, db, "OK-1"); body != string(ok.Raw) {
		t.Fatalf("stored %q", body)
	}
}

// TestRemoveCommand: Hale's command expiry takes one command out of one enrollment's queue;
// the others still get it, and the body goes when the last one is removed.
func TestRemoveCommand(t *testing.T) {
	db := openDB(t)
	st := newStorage(t, db, pgmdm.WithCommandSealer(masterKey(t)))
	a := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-0000000000A1")
	b := enroll(t, st, "0000FE00-5A1E-4D2C-8B5B-0000000000B1")
	ctx := context.Background()
	enqueue(t, st, lockCommand(t, "SHARED", "1"), a.udid, b.udid)
	enqueue(t, st, lockCommand(t, "NEXT", "2"), a.udid)

	a.expect("", "Idle", "SHARED")
	a.expect("SHARED", "NotNow", "NEXT") // its NotNow answer is removed along with the entry
	if err := st.RemoveCommand(ctx, a.udid, "SHARED"); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveCommand(ctx, a.udid, "SHARED"); err != nil {
		t.Fatalf("removing again: %v", err)
	}
	a.expect("", "Idle", "NEXT")
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM command_results WHERE command_uuid = 'SHARED'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d results of the removed command left (err %v)", n, err)
	}
	b.expect("", "Idle", "SHARED") // still queued for b, and still opens
	if err := st.RemoveCommand(ctx, b.udid, "SHARED"); err != nil {
		t.Fatal(err)
	}
	b.expect("", "Idle", "")
	if err := db.QueryRow(`SELECT count(*) FROM commands WHERE command_uuid = 'SHARED'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the body of a command queued nowhere is kept (%d, err %v)", n, err)
	}
}
