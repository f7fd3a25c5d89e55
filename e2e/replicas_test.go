package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/posture"
	"github.com/jackc/pgx/v5"
)

// pgCluster is the primary and its access replicas, as processes on one PostgreSQL database.
type pgCluster struct {
	t       *testing.T
	bin     string
	dsn     string
	primary *accServer
}

// startPrimary starts mdmserver as the primary on a fresh database.
func startPrimary(t *testing.T, bin, dsn string) *accServer {
	t.Helper()
	p := &accServer{t: t, bin: bin, addr: freeAddr(t), data: filepath.Join(t.TempDir(), "data"),
		env: []string{"HALE_DATABASE=" + dsn, "HALE_ENROLL_RATE=1000", "HALE_ENROLL_BURST=1000"}}
	p.start()
	return p
}

// startReplica starts an access replica on a copy of the primary's data directory (the CA's
// key, the master key), as a second machine would hold it, connecting to the database as
// user (so the test can cut it off alone).
func (c *pgCluster) startReplica(user string, staleAfter time.Duration) *accServer {
	t := c.t
	t.Helper()
	data := copyDataDir(t, c.primary.data)
	u, err := url.Parse(c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	r := &accServer{t: t, bin: c.bin, addr: freeAddr(t), data: data, env: []string{
		"HALE_DATABASE=" + u.String(), "HALE_ROLE=access", "HALE_REPLICA_STALE_AFTER=" + staleAfter.String()}}
	r.start()
	return r
}

// copyDataDir copies a server's data directory (its CA, master key and audit key), as another
// machine holds it, and returns the copy's path.
func copyDataDir(t *testing.T, data string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", data, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v %s", err, out)
	}
	return dst
}

// answer is the replica's or primary's access answer for a device.
func answer(s *accServer, token, id string) (allow bool, codes []string) {
	var a accAccess
	s.mustCall("GET", "/access/v1/devices/"+id, token, "", 200, &a)
	return a.Allow, accCodes(a.Reasons)
}

// waitAnswer polls s until the device's answer is allow (or deny), and returns how long it took.
func waitAnswer(t *testing.T, s *accServer, token, id string, allow bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got, _ := answer(s, token, id); got == allow {
			return time.Since(start)
		}
		if time.Since(start) > within {
			_, codes := answer(s, token, id)
			t.Fatalf("device %s on %s: not allow=%v after %v (reasons %v)", id, s.addr, allow, within, codes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Access replicas on the primary's database: they answer from memory kept current by the
// change feed (a device enrolled, a lock, a revoked certificate on the primary reach them within
// a second), serve nothing else, deny with index_stale when cut off from the database and catch
// up by themselves when it comes back.
func TestAccessReplicas(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	pgtest.Exec(t, dsn, "CREATE ROLE hale_replica LOGIN SUPERUSER")
	t.Cleanup(func() { pgtest.Exec(t, dsn, "DROP ROLE IF EXISTS hale_replica") })
	bin := buildBinary(t, "mdmserver")
	c := &pgCluster{t: t, bin: bin, dsn: dsn}
	c.primary = startPrimary(t, bin, dsn)
	p := c.primary
	it, security, access := p.token("it"), p.token("security"), p.token("access")
	p.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 24h\n", 200, nil)
	p.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	before, beforeID := enrollDevice(t, p.server, it)
	reportEncrypted(t, p.server, p.mtlsClient(before))

	r := c.startReplica("hale_replica", 2*time.Second)
	if allow, codes := answer(r, access, beforeID); !allow {
		t.Fatalf("the replica denies a device enrolled before it started: %v", codes)
	}
	// Devices enrolled and reporting on the primary now reach the replica.
	ids := make([]string, 6)
	for i := range ids {
		var dev tls.Certificate
		dev, ids[i] = enrollDevice(t, p.server, it)
		reportEncrypted(t, p.server, p.mtlsClient(dev))
	}
	for _, id := range ids {
		waitAnswer(t, r, access, id, true, 5*time.Second)
	}

	// A lock on the primary reaches the replica within a second, each time.
	var lags []time.Duration
	for _, id := range ids[:5] {
		p.mustCall("POST", "/api/v1/devices/"+id+"/lock", security, `{"reason":"left on the bus"}`, 202, nil)
		lags = append(lags, waitAnswer(t, r, access, id, false, 5*time.Second))
		if _, codes := answer(r, access, id); !slices.Contains(codes, "device_locked") {
			t.Fatalf("locked device %s denied for %v", id, codes)
		}
	}
	slices.Sort(lags)
	t.Logf("lock on the primary to deny on the replica: %v", lags)
	if lags[len(lags)-1] > time.Second {
		t.Errorf("a lock took %v to reach the replica, want under 1s", lags[len(lags)-1])
	}
	id := ids[5]

	// Unenrolling revokes the device's certificate: the replica refuses it in a check.
	p.mustCall("DELETE", "/api/v1/devices/"+beforeID, security, "", 200, nil)
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: before.Certificate[0]}))
	body, _ := json.Marshal(posture.CheckRequest{Subject: posture.Subject{Certificate: certPEM}})
	waitFor(t, 5*time.Second, "the replica to refuse the revoked certificate", func() bool {
		var d accAccess
		r.mustCall("POST", "/access/v1/check", access, string(body), 200, &d)
		return !d.Allow && slices.Contains(accCodes(d.Reasons), "certificate_revoked")
	})

	// Credentials of the wrong kind or forged are refused as on the primary: an IT token may not
	// ask for decisions, a token with a made-up secret is unknown.
	if code, _ := r.raw("GET", "/access/v1/devices/"+id, it); code != 403 {
		t.Errorf("an IT token on the replica's decisions: %d, want 403", code)
	}
	if forged := access[:len(access)-4] + "0000"; forged != access {
		if code, _ := r.raw("GET", "/access/v1/devices/"+id, forged); code != 401 {
			t.Errorf("a forged access token on the replica: %d, want 401", code)
		}
	}

	// Only the decisions: everything else is the primary's (421, outside the API document).
	for _, path := range []string{"/api/v1/devices", "/agent/v1/nonce", "/mdm"} {
		if code, _ := r.raw("GET", path, it); code != 421 {
			t.Errorf("GET %s on the replica: %d, want 421", path, code)
		}
	}

	// The feed stalls (its table locked): past its stale_after the replica denies everything
	// with index_stale and /readyz says not ready; when the feed moves again, so does it.
	release := lockChanges(t, dsn)
	waitFor(t, 10*time.Second, "the stalled replica to deny with index_stale", func() bool {
		_, body := r.raw("GET", "/access/v1/devices/"+id, access)
		return strings.Contains(body, `"allow":false`) && strings.Contains(body, "index_stale")
	})
	if code, _ := r.raw("GET", "/readyz", ""); code != 503 {
		t.Errorf("/readyz of the stalled replica: %d, want 503", code)
	}
	release()
	waitAnswer(t, r, access, id, true, 10*time.Second)

	// Cut off from the database altogether: it still checks API tokens (from memory) and denies
	// with index_stale; the primary locks the device meanwhile; back on, the replica catches up
	// by itself. A token revoked on the primary stops working on the replica too.
	pgtest.Exec(t, dsn, "ALTER ROLE hale_replica NOLOGIN")
	pgtest.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hale_replica'")
	waitFor(t, 10*time.Second, "the cut-off replica to deny with index_stale", func() bool {
		code, body := r.raw("GET", "/access/v1/devices/"+id, access)
		return code == 200 && strings.Contains(body, "index_stale")
	})
	p.mustCall("POST", "/api/v1/devices/"+id+"/lock", security, `{"reason":"stolen"}`, 202, nil)
	pgtest.Exec(t, dsn, "ALTER ROLE hale_replica LOGIN")
	waitFor(t, 15*time.Second, "the replica to catch up after the outage", func() bool {
		code, body := r.raw("GET", "/access/v1/devices/"+id, access)
		return code == 200 && strings.Contains(body, "device_locked")
	})
	if code, _ := r.raw("GET", "/readyz", ""); code != 200 {
		t.Errorf("/readyz after catching up: %d", code)
	}
	var tokens struct{ Tokens []struct{ ID, Name string } }
	p.mustCall("GET", "/api/v1/tokens", p.admin, "", 200, &tokens)
	for _, tok := range tokens.Tokens {
		if tok.Name == "access" {
			p.mustCall("DELETE", "/api/v1/tokens/"+tok.ID, p.admin, "", 200, nil)
		}
	}
	if code, _ := p.raw("GET", "/access/v1/devices/"+id, access); code != 401 {
		t.Errorf("the primary after revoking the token: %d, want 401", code)
	}
	waitFor(t, 5*time.Second, "the replica to refuse the revoked token", func() bool {
		code, _ := r.raw("GET", "/access/v1/devices/"+id, access)
		return code == 401
	})
}

// lockChanges holds an exclusive lock on the change feed's table until release is called, so
// no replica can read it (and no write can add to it).
func lockChanges(t *testing.T, dsn string) (release func()) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "LOCK TABLE hale_changes IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(context.Background())
			_ = conn.Close(context.Background())
		})
	}
	t.Cleanup(release)
	return release
}

// raw sends a request outside the API document's checks (a replica's 421s and 503s) and
// returns the status and body.
func (s *server) raw(method, path, token string) (int, string) {
	s.t.Helper()
	code, body := s.rawBody(method, path, token, "")
	if code == 0 {
		s.t.FailNow()
	}
	return code, body
}

// rawBody is raw with a request body. It may be called from any goroutine: a request that gets
// no answer fails the test and returns 0.
func (s *server) rawBody(method, path, token, body string) (int, string) {
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
