package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
)

// lbConfig is the load balancer recipe the README shows, run here as is.
const lbConfig = "../examples/haproxy/hale.cfg"

// requireHAProxy returns the haproxy binary's path; without one the test is skipped, or fails
// under CI, where a skip would pass without running anything (.ci/run installs it).
func requireHAProxy(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy" // not on a non-root PATH
	}
	if os.Getenv("CI") != "" {
		t.Fatal("haproxy is required under CI (.ci/run installs it): TestLoadBalancerRecipe runs examples/haproxy/hale.cfg")
	}
	t.Skip("haproxy not installed (apt-get install haproxy): TestLoadBalancerRecipe runs examples/haproxy/hale.cfg")
	return ""
}

// lbFrontend is a frontend of the load balancer as the tests' clients see it: Hale's API
// helpers on the frontend's address, trusting Hale's root, as a client trusts the servers
// behind it (TLS passes through: the certificate is Hale's own).
func lbFrontend(t *testing.T, addr string, hale *accServer) *accServer {
	s := &accServer{t: t, addr: addr, data: hale.data, roots: hale.roots}
	s.server = &server{t: t, url: "https://" + addr, admin: hale.admin,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: hale.roots}}}}
	return s
}

// The README's HAProxy recipe (examples/haproxy/hale.cfg) in front of two servers on one
// PostgreSQL database and two access replicas: through it only, the admin API answers with
// Hale's own certificate (TLS passes through), an agent enrolls and reports with its client
// certificate (mTLS reaches Hale), and the access frontend answers for it. When the server the
// client is balanced to is killed with SIGKILL, HAProxy's /readyz check marks it down and the
// same device's reports, the admin API and a lock (denied through the access frontend) carry on
// on the other.
func TestLoadBalancerRecipe(t *testing.T) {
	haproxy := requireHAProxy(t)
	dsn := pgtest.NewDatabase(t)
	bin := buildBinary(t, "mdmserver")
	a := startPrimary(t, bin, dsn)
	b := &accServer{t: t, bin: bin, addr: freeAddr(t), data: copyDataDir(t, a.data), env: a.env}
	b.start()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{t: t, bin: bin, dsn: dsn, primary: a}
	r1 := c.startReplica(u.User.Username(), 5*time.Second)
	r2 := c.startReplica(u.User.Username(), 5*time.Second)
	const leader = "background lease taken"
	waitFor(t, 10*time.Second, "A to run the background work", func() bool { return strings.Contains(a.proc.output(), leader) })

	devicesAddr, accessAddr := freeAddr(t), freeAddr(t)
	lb := startProcessEnv(t, []string{
		"HALE_A=" + a.addr, "HALE_B=" + b.addr, "HALE_R1=" + r1.addr, "HALE_R2=" + r2.addr,
		"HALE_LB_DEVICES=" + devicesAddr, "HALE_LB_ACCESS=" + accessAddr, "HALE_LB_CHECK_INTERVAL=200ms",
	}, haproxy, "-db", "-f", lbConfig)
	waitFor(t, 10*time.Second, "HAProxy to serve both frontends", func() bool {
		select {
		case err := <-lb.done:
			t.Fatalf("haproxy exited: %v\n%s", err, lb.output())
		default:
		}
		return healthy(devicesAddr) && healthy(accessAddr)
	})
	front, accessFront := lbFrontend(t, devicesAddr, a), lbFrontend(t, accessAddr, a)
	// HAProxy's health check reaches each server's /readyz over TLS and gets its 200.
	for _, s := range []*accServer{a, b, r1, r2} {
		waitFor(t, 5*time.Second, "HAProxy's check on "+s.addr+"'s /readyz", func() bool {
			return strings.Contains(s.proc.output(), `"path":"/readyz","status":200`)
		})
	}

	// Passthrough: the certificate through the load balancer is one of the servers' own, and it
	// verifies against Hale's root for the address the client dialed.
	leaf := func(addr string) []byte {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: a.roots})
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if got := leaf(devicesAddr); !bytes.Equal(got, leaf(a.addr)) && !bytes.Equal(got, leaf(b.addr)) {
		t.Fatal("the devices frontend's certificate is neither server's: TLS does not pass through")
	}
	if got := leaf(accessAddr); !bytes.Equal(got, leaf(r1.addr)) && !bytes.Equal(got, leaf(r2.addr)) {
		t.Fatal("the access frontend's certificate is neither replica's: TLS does not pass through")
	}

	// The admin API, an enrollment and reports, all through the load balancer.
	it, security, access := front.token("it"), front.token("security"), front.token("access")
	front.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 24h\n", 200, nil)
	front.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	cert, id := enrollDevice(t, front.server, it)
	// Every request on a connection of its own: the nonce and the report it carries reach the
	// same server only because HAProxy balances by source address (another server refuses it).
	device := front.mtlsClient(cert)
	device.Transport.(*http.Transport).DisableKeepAlives = true
	base := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	for seq := 1; seq <= 4; seq++ {
		if err := lbReport(device, front.url, seq, base); err != nil {
			t.Fatal(err)
		}
	}
	// Without its certificate the same request is refused: the one Hale accepted came through.
	if code, _ := front.raw("GET", "/agent/v1/nonce", ""); code != http.StatusUnauthorized {
		t.Errorf("an agent's nonce through the load balancer without a client certificate: %d, want 401", code)
	}
	waitAnswer(t, accessFront, access, id, true, 5*time.Second)
	lbObserved(t, accessFront, access, id, base)

	// Which server the client is balanced to: the one holding the background lease (A) says so
	// in its metrics.
	victim, survivor, name := a, b, "a"
	if !lbOnLeader(t, front) {
		victim, survivor, name = b, a, "b"
	}
	if out := lb.output(); strings.Contains(out, " is DOWN") {
		t.Fatalf("HAProxy marked a server down before the kill:\n%s", out)
	}
	killed := time.Now()
	victim.kill()
	waitFor(t, 10*time.Second, "HAProxy's check to mark the killed server down", func() bool {
		return strings.Contains(lb.output(), "Server hale/"+name+" is DOWN")
	})
	t.Logf("HAProxy marked %s down %v after the kill", name, time.Since(killed).Round(time.Millisecond))

	// The same device carries on through the load balancer, on the survivor; the admin API too.
	second := base.Add(time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := lbReport(device, front.url, 5, second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device's report through the load balancer 10s after the kill: %v", err)
		}
	}
	t.Logf("reporting again through the load balancer %v after the kill", time.Since(killed).Round(time.Millisecond))
	lbObserved(t, accessFront, access, id, second)
	var dev struct{ ID string }
	front.mustCall("GET", "/api/v1/devices/"+id, it, "", 200, &dev)
	if dev.ID != id {
		t.Errorf("GET /api/v1/devices/%s through the load balancer after the kill: id %q", id, dev.ID)
	}
	if !healthy(survivor.addr) {
		t.Error("the surviving server stopped serving")
	}

	// A lock ordered through the load balancer is a deny through the access frontend.
	front.mustCall("POST", "/api/v1/devices/"+id+"/lock", security, `{"reason":"left on the bus"}`, 202, nil)
	lag := waitAnswer(t, accessFront, access, id, false, 5*time.Second)
	if _, codes := answer(accessFront, access, id); !slices.Contains(codes, "device_locked") {
		t.Errorf("the locked device is denied for %v, want device_locked", codes)
	}
	t.Logf("lock through the load balancer to deny through the access frontend: %v", lag)
	if strings.Contains(lb.output(), "Server hale_access/") {
		t.Errorf("HAProxy changed an access replica's state:\n%s", lb.output())
	}
}

// lbReport sends one posture report (encrypted root and swap, observed at observed) with the
// sequence number seq, as an agent does: a nonce, then the report. It returns what went wrong
// instead of failing, so the caller can retry while the load balancer fails over.
func lbReport(c *http.Client, base string, seq int, observed time.Time) error {
	nonce, code, body, err := accNonce(c, base)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("nonce: %d %v %s", code, err, body)
	}
	now := time.Now().UTC()
	claim := map[string]any{"value": true, "source": "agent", "observed_at": observed}
	report := map[string]any{"nonce": nonce, "sequence": seq, "collected_at": now, "posture": map[string]any{
		"platform": "linux", "reported_at": now, "disk_encrypted": claim, "swap_encrypted": claim}}
	var ans struct{ Nonce string }
	if code, body, err := accPost(c, base+"/agent/v1/report", report, &ans); err != nil || code != http.StatusOK {
		return fmt.Errorf("report %d: %d %v %s", seq, code, err, body)
	}
	return nil
}

// lbObserved waits until the device's access answer through s carries the report observed at
// observed: the report the load balancer passed on is the one the database holds.
func lbObserved(t *testing.T, s *accServer, token, id string, observed time.Time) {
	t.Helper()
	waitFor(t, 5*time.Second, "the report observed at "+observed.String()+" in the access answer", func() bool {
		var ans accAccess
		s.mustCall("GET", "/access/v1/devices/"+id, token, "", 200, &ans)
		return ans.Posture != nil && ans.Posture.DiskEncrypted != nil && ans.Posture.DiskEncrypted.ObservedAt.Equal(observed)
	})
}

// lbOnLeader reports whether the server the load balancer sends this client to holds the
// background lease, from its /metrics.
func lbOnLeader(t *testing.T, s *accServer) bool {
	t.Helper()
	code, body := s.raw("GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics through the load balancer: %d", code)
	}
	for sc := bufio.NewScanner(strings.NewReader(body)); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "hale_background_leader "); ok {
			return strings.TrimSpace(v) == "1"
		}
	}
	t.Fatalf("no hale_background_leader in /metrics:\n%s", body)
	return false
}

// The README's excerpt of the recipe is the file's own lines, in the file's order: what a
// reader copies is what TestLoadBalancerRecipe runs.
func TestReadmeShowsLoadBalancerRecipe(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(lbConfig)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "[`examples/haproxy/hale.cfg`](examples/haproxy/hale.cfg)")
	if !ok {
		t.Fatal("README.md does not link examples/haproxy/hale.cfg")
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	excerpt, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no ``` block after README.md's link to examples/haproxy/hale.cfg")
	}
	var lines []string
	for l := range strings.SplitSeq(string(cfg), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	shown := 0
	for l := range strings.SplitSeq(excerpt, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		i := slices.Index(lines, l)
		if i < 0 {
			t.Fatalf("README.md's HAProxy excerpt shows %q, which is not (or no longer in order) in %s", l, lbConfig)
		}
		lines = lines[i+1:]
		shown++
	}
	if shown < 10 {
		t.Fatalf("README.md's HAProxy excerpt has %d lines", shown)
	}
}
