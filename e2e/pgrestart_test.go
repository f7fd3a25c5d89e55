package e2e

import (
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
)

// PostgreSQL restarted under load (a device reporting, the backend checking): meanwhile no
// answer from the replica is an allow (it denies or says 503) and no report is acknowledged that
// is not stored; afterwards the primary and the replica serve again by themselves, and every
// acknowledged report is there.
func TestPostgresRestart(t *testing.T) {
	cluster := pgtest.StartCluster(t)
	u, err := url.Parse(cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, cluster.URL, "CREATE DATABASE hale")
	u.Path = "/hale"
	dsn := u.String()
	pgtest.Exec(t, dsn, "CREATE ROLE hale_replica LOGIN SUPERUSER")
	bin := buildBinary(t, "mdmserver")
	c := &pgCluster{t: t, bin: bin, dsn: dsn}
	c.primary = startPrimary(t, bin, dsn)
	p := c.primary
	it, access := p.token("it"), p.token("access")
	p.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 24h\n", 200, nil)
	p.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	cert, id := enrollDevice(t, p.server, it)
	reportEncrypted(t, p.server, p.mtlsClient(cert))
	r := c.startReplica("hale_replica", 2*time.Second)
	waitAnswer(t, r, access, id, true, 5*time.Second)

	// The load: the device reports one after another; the replica is asked all along.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lastAcked atomic.Int64         // observed_at (Unix ns) of the last acknowledged report
	var lastAllowInOutage atomic.Int64 // Unix ns of the last allow while the database was away
	var outage atomic.Bool
	client := p.mtlsClient(cert)
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			nonce, status, _, err := accNonce(client, p.url)
			if err != nil || status != 200 {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			observed := time.Now().UTC()
			claim := map[string]any{"value": true, "source": "agent", "observed_at": observed}
			report := map[string]any{"nonce": nonce, "sequence": n, "collected_at": observed, "posture": map[string]any{
				"platform": "linux", "reported_at": observed, "disk_encrypted": claim, "swap_encrypted": claim}}
			if status, _, err := accPost(client, p.url+"/agent/v1/report", report, nil); err == nil && status == 200 {
				lastAcked.Store(observed.UnixNano())
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if code, body := r.raw("GET", "/access/v1/devices/"+id, access); outage.Load() && code == 200 && strings.Contains(body, `"allow":true`) {
				lastAllowInOutage.Store(time.Now().UnixNano())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	outage.Store(true)
	restarted := time.Now()
	cluster.Restart(t)
	outage.Store(false) // the database is back: what follows is catching up
	t.Logf("PostgreSQL restarted in %v", time.Since(restarted).Round(time.Millisecond))

	// Both serve again by themselves; the primary, whose background lease went with its
	// connection, takes it again.
	waitFor(t, 90*time.Second, "the primary to take its background lease again", func() bool {
		out := p.proc.output()
		return strings.Contains(out, "background lease lost") && strings.Count(out, "background lease taken") >= 2
	})
	waitFor(t, 60*time.Second, "the primary to serve again", func() bool {
		code, _ := p.raw("GET", "/readyz", "")
		return code == 200
	})
	waitFor(t, 30*time.Second, "the replica to answer again", func() bool {
		code, body := r.raw("GET", "/access/v1/devices/"+id, access)
		return code == 200 && strings.Contains(body, `"allow":true`)
	})
	t.Logf("primary and replica serving %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	time.Sleep(time.Second) // reports acknowledged by the primary after its return
	close(stop)
	wg.Wait()
	// An allow while the database was away came from an index still fresh: within stale_after
	// (2s) of its last catch-up, which was before the restart began.
	if at := lastAllowInOutage.Load(); at != 0 && time.Unix(0, at).After(restarted.Add(2*time.Second+500*time.Millisecond)) {
		t.Errorf("the replica allowed %v into the outage, past its stale_after", time.Unix(0, at).Sub(restarted))
	}
	var ans accAccess
	p.mustCall("GET", "/access/v1/devices/"+id, access, "", 200, &ans)
	last := time.Unix(0, lastAcked.Load()).UTC()
	if ans.Posture == nil || ans.Posture.DiskEncrypted == nil || ans.Posture.DiskEncrypted.ObservedAt.Before(last.Truncate(time.Microsecond)) {
		t.Fatalf("the last acknowledged report (observed %s) is not stored: %+v", last, ans.Posture)
	}
}
