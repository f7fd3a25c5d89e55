package mdmserver_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// migratedFleet is what a bbolt server held before the migration, to find after it.
type migratedFleet struct {
	mac                *applesim.Device
	wipeID, pin        string
	kept, revoked      agentIdentity
	securityTok, itTok string
	crlEntries         int
	decisions          map[string]access.Answer
}

// accessAnswer is the access API's answer for device id.
func accessAnswer(env *testEnv, tok, id string) access.Answer {
	env.t.Helper()
	var a access.Answer
	if code := env.call("GET", "/api/v1/devices/"+id+"/access", tok, nil, &a); code != 200 {
		env.t.Fatalf("access answer of %s: %d", id, code)
	}
	return a
}

// runBoltFleet runs a server on bbolt with a Mac (a wipe queued for it, its PIN sealed), two
// agents (one unenrolled: its certificate revoked), tokens and their audit entries, then stops
// it.
func runBoltFleet(t *testing.T) (*testEnv, migratedFleet) {
	t.Helper()
	env := newTestEnv(t)
	var f migratedFleet
	f.mac = env.enrollDevice(applesim.WithState(applesim.MacOSState()))
	f.securityTok, f.itTok = env.token("security"), env.token("it")
	// The kept agent is compliant under a policy.
	f.kept, _ = env.compliantAgent()
	f.revoked, _ = env.enrolledAgent()
	var d inventory.Device
	if code := env.call("DELETE", "/api/v1/devices/"+f.revoked.DeviceID, env.Admin, nil, &d); code != 200 {
		t.Fatalf("unenroll: %d", code)
	}
	var wipe securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+f.mac.UDID()+"/wipe", f.securityTok, []byte(`{"reason":"left in a taxi","mode":"full"}`), &wipe); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	var pin struct{ PIN string }
	if code := env.call("GET", "/api/v1/devices/"+f.mac.UDID()+"/commands/"+wipe.CommandID+"/pin", f.securityTok, nil, &pin); code != 200 || pin.PIN == "" {
		t.Fatalf("PIN: %d", code)
	}
	f.wipeID, f.pin = wipe.CommandID, pin.PIN
	// The Mac is denied while its wipe is pending; the kept agent allowed.
	f.decisions = map[string]access.Answer{}
	for _, id := range []string{f.kept.DeviceID, f.mac.UDID()} {
		f.decisions[id] = accessAnswer(env, f.itTok, id)
	}
	if k, m := f.decisions[f.kept.DeviceID], f.decisions[f.mac.UDID()]; !k.Allow || !k.Compliant || m.Allow || m.State != "wipe_pending" {
		t.Fatalf("decisions before the migration: %+v", f.decisions)
	}
	f.crlEntries = crlEntries(env)
	if f.crlEntries == 0 {
		t.Fatal("the unenrolled agent's certificate is not on the CRL")
	}
	var cp struct{ Checkpoint string }
	if code := env.call("GET", "/api/v1/audit/checkpoint", f.securityTok, nil, &cp); code != 200 {
		t.Fatalf("checkpoint: %d", code)
	}
	env.Stop()
	return env, f
}

func crlEntries(env *testEnv) int {
	env.t.Helper()
	_, der := env.get(env.URL + "/ca/crl")
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		env.t.Fatalf("CRL: %v", err)
	}
	return len(crl.RevokedCertificateEntries)
}

// TestMigrateToPostgreSQL moves a bbolt server's data directory into PostgreSQL and starts the
// server there on the same directory: tokens, devices, the CA's revocations, the audit log and
// the Mac's queued wipe (sealed, moved unopened) are all there, and the Mac checks in.
func TestMigrateToPostgreSQL(t *testing.T) {
	env, f := runBoltFleet(t)
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()

	// A server still running on the source is refused (bbolt's lock), before touching the target.
	held, err := boltstore.Open(filepath.Join(env.Config.DataDir, "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mdmserver.Migrate(ctx, env.Config.DataDir, dsn, mdmserver.WithMigrateOpenTimeout(50*time.Millisecond)); !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("migrate from a locked file: %v", err)
	}
	held.Close()

	res, err := mdmserver.Migrate(ctx, env.Config.DataDir, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices != 1 || res.Queued < 1 || res.CertAssociations != 1 || res.AuditEntries == 0 ||
		res.Checkpoint.N == 0 || res.CAEntries == 0 || res.Buckets[string(kvstore.BucketAuditEntries)] != res.AuditEntries {
		t.Fatalf("migrated: %+v", res)
	}
	t.Logf("migrated: %+v", res)
	// Into a database that now holds state, a second migration is refused.
	if _, err := mdmserver.Migrate(ctx, env.Config.DataDir, dsn); !errors.Is(err, pgstore.ErrNotEmpty) {
		t.Fatalf("migrate into a non-empty database: %v", err)
	}

	env.Config.Database = dsn
	env.Restart()
	if _, ok := env.Store().(*pgstore.Store); !ok {
		t.Fatalf("the server runs on %T", env.Store())
	}
	var d inventory.Device
	if code := env.call("GET", "/api/v1/devices/"+f.mac.UDID(), f.itTok, nil, &d); code != 200 || d.State == "" {
		t.Fatalf("the Mac after the migration: %d %+v", code, d)
	}
	if code := env.call("GET", "/api/v1/devices/"+f.revoked.DeviceID, f.itTok, nil, &d); code != 200 || d.State != inventory.StateUnenrolled {
		t.Fatalf("the unenrolled agent after the migration: %d %+v", code, d)
	}
	for id, before := range f.decisions {
		after := accessAnswer(env, f.itTok, id)
		if after.Allow != before.Allow || after.State != before.State || after.Compliant != before.Compliant || !after.GraceUntil.Equal(before.GraceUntil) ||
			!slices.Equal(after.ReasonCodes(), before.ReasonCodes()) || !after.ReportedAt.Equal(before.ReportedAt) {
			t.Errorf("%s: decided %+v after the migration, %+v before", id, after, before)
		}
	}
	db := openDatabase(t, dsn)
	var assoc int
	if err := db.QueryRow(`SELECT count(*) FROM cert_auth_associations WHERE id = $1`, f.mac.UDID()).Scan(&assoc); err != nil || assoc != 1 {
		t.Fatalf("the Mac's certificate association: %d %v", assoc, err)
	}
	if n := crlEntries(env); n != f.crlEntries {
		t.Fatalf("CRL: %d entries, %d before", n, f.crlEntries)
	}
	// The kept agent renews over mTLS; the revoked one is refused.
	renew := func(id agentIdentity) int {
		body, _ := json.Marshal(map[string]string{"csr": newCSR(t, id.key)})
		resp, err := env.mtlsClient(id).Post(env.URL+"/agent/v1/renew", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := renew(f.kept); code != http.StatusOK {
		t.Fatalf("the kept agent renews: %d", code)
	}
	if code := renew(f.revoked); code >= 0 && code < 400 {
		t.Fatalf("the revoked agent renewed: %d", code)
	}
	// The audit log goes on from where it was.
	var cp struct{ Checkpoint string }
	if code := env.call("GET", "/api/v1/audit/checkpoint", f.securityTok, nil, &cp); code != 200 {
		t.Fatalf("checkpoint after the migration: %d", code)
	}
	// The Mac checks in against nanomdm's PostgreSQL storage and gets the wipe with its PIN.
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := f.mac.Poll(pctx); err != nil && !f.mac.State().Erased {
		t.Fatal(err)
	}
	if s := f.mac.State(); !s.Erased || s.ErasePIN != f.pin {
		t.Fatalf("the Mac: erased %v with PIN %q, want %q", s.Erased, s.ErasePIN, f.pin)
	}
	if rec := env.waitCommand(f.mac.UDID(), f.wipeID); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice: %+v", rec.Record)
	}
}

// TestMigrateRefusesTamperedAudit: an audit entry changed in the source fails verification, the
// error says so, and nothing is copied.
func TestMigrateRefusesTamperedAudit(t *testing.T) {
	env, _ := runBoltFleet(t)
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(env.Config.DataDir, "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.Bucket(string(kvstore.BucketAuditEntries))
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for k := range entries.Keys(ctx, nil) {
		if first == "" {
			first = k
		}
	}
	v, err := entries.Get(ctx, first)
	if err != nil || len(v) < 10 {
		t.Fatalf("first audit entry: %q %v", v, err)
	}
	v = []byte(strings.Replace(string(v), `"ok"`, `"no"`, 1))
	if err := entries.Set(ctx, first, v); err != nil {
		t.Fatal(err)
	}
	st.Close()

	dsn := pgtest.NewDatabase(t)
	_, err = mdmserver.Migrate(ctx, env.Config.DataDir, dsn)
	if err == nil || !strings.Contains(err.Error(), "audit log") || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("migrate with a tampered audit log: %v", err)
	}
	t.Log(err)
	pg, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.CheckEmpty(ctx); err != nil {
		t.Fatalf("the refused migration wrote: %v", err)
	}
}
