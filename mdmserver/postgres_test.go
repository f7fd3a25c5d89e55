package mdmserver_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// TestServerOnPostgreSQL runs the server with all its state in PostgreSQL (--database): Hale's
// records, nanomdm's (pgmdm, bodies sealed under the master key) and the CA's. A Mac enrolls,
// an unanswered query expires out of the queue, a full wipe's PIN stays sealed in the commands
// table across a restart of the server, and the Mac gets it and the wipe when it checks in.
func TestServerOnPostgreSQL(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	env := newTestEnv(t, func(c *mdmserver.Config) { c.Database = dsn })
	db := openDatabase(t, dsn)
	if _, ok := env.Store().(*pgstore.Store); !ok {
		t.Fatalf("the server runs on %T, not PostgreSQL", env.Store())
	}
	// No push loop: the Mac checks in when the test says, after the restart.
	dev := env.enrollDevice(applesim.WithState(applesim.MacOSState()))
	count := func(query string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRow(query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM enrollments WHERE id = $1 AND enabled`, dev.UDID()); n != 1 {
		t.Fatalf("the Mac's enrollment is not in PostgreSQL (%d rows)", n)
	}

	var query struct {
		UUID string `json:"command_id"`
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", env.token("it"), []byte(`{"request_type":"SecurityInfo"}`), &query); code != 202 {
		t.Fatalf("query: %d", code)
	}
	security := env.token("security")
	var wipe securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", security, []byte(`{"reason":"stolen from the ward","mode":"full"}`), &wipe); code != 202 || wipe.State != "queued" {
		t.Fatalf("wipe: %d %+v", code, wipe)
	}
	// Expiry takes the query out of the queue in PostgreSQL (pgmdm's RemoveCommand); a wipe waits.
	if n, err := env.DispatcherForTest().Expire(context.Background(), -time.Minute, applemdm.SecurityCommand); err != nil || n < 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	// Left queued: the wipe alone (enrollment's own posture queries expired with the query).
	if n := count(`SELECT count(*) FROM enrollment_queue WHERE command_uuid = $1`, query.UUID); n != 0 {
		t.Fatalf("the expired query is still queued (%d rows)", n)
	}
	if n := count(`SELECT count(*) FROM enrollment_queue WHERE id = $1 AND command_uuid <> $2`, dev.UDID(), wipe.CommandID); n != 0 {
		t.Fatalf("%d expired commands are still queued", n)
	}

	var pin struct{ PIN string }
	if code := env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands/"+wipe.CommandID+"/pin", security, nil, &pin); code != 200 || pin.PIN == "" {
		t.Fatalf("PIN: %d %+v", code, pin)
	}
	var body string
	if err := db.QueryRow(`SELECT command FROM commands WHERE command_uuid = $1`, wipe.CommandID).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, pin.PIN) || strings.Contains(body, "<key>") || strings.Contains(body, "EraseDevice") {
		t.Fatalf("the queued wipe is stored in clear:\n%s", body)
	}

	env.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := dev.Poll(ctx); err != nil && !dev.State().Erased {
		t.Fatal(err)
	}
	if s := dev.State(); !s.Erased || s.ErasePIN != pin.PIN {
		t.Fatalf("the Mac: erased %v with PIN %q, want %q", s.Erased, s.ErasePIN, pin.PIN)
	}
	if slices.ContainsFunc(dev.Commands(), func(c applesim.CommandRecord) bool { return c.CommandUUID == query.UUID }) {
		t.Fatal("the Mac was handed the expired query")
	}
	if rec := env.waitCommand(dev.UDID(), wipe.CommandID); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice: %+v", rec.Record)
	}
	if n := count(`SELECT count(*) FROM commands`); n != 0 {
		t.Fatalf("%d answered or expired commands left in PostgreSQL", n)
	}
}

// openDatabase returns a database/sql handle on dsn, for reading what the server stored.
func openDatabase(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A server started on a database in use with an empty data directory refuses, rather than make
// a CA and an audit key of its own; so does one on a database an interrupted migrate left with
// enrollments and no records.
func TestPostgreSQLNeedsItsDataDirectory(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	newTestEnv(t, func(c *mdmserver.Config) { c.Database = dsn })
	cfg := mdmserver.Defaults()
	cfg.DataDir, cfg.Database = t.TempDir(), dsn
	if srv, err := mdmserver.New(cfg); err == nil {
		srv.Close()
		t.Fatal("a server with an empty data directory started on a database in use")
	} else if !strings.Contains(err.Error(), "copy of the first server's data directory") {
		t.Fatalf("refusal: %v", err)
	}

	half := pgtest.NewDatabase(t)
	st, err := pgstore.Open(t.Context(), half)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	pgtest.Exec(t, half, `INSERT INTO devices (id, authenticate, authenticate_at) VALUES ('UDID-1', 'x', now());
		INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex, last_seen_at) VALUES ('UDID-1', 'UDID-1', 'Device', 't', 'm', 'aa', now())`)
	cfg.DataDir, cfg.Database = t.TempDir(), half
	if srv, err := mdmserver.New(cfg); err == nil {
		srv.Close()
		t.Fatal("a server started on a half-migrated database")
	} else if !strings.Contains(err.Error(), "interrupted `mdmserver migrate`") {
		t.Fatalf("refusal: %v", err)
	}
}
