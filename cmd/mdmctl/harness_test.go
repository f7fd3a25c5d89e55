package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/rootpin"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/policies"
)

const testTopic = "com.apple.mgmt.External.3b5e5b2c-8f1a-4d0e-9c55-mdmctl-test"

// env is a real Hale server on a loopback port, with a fake APNs and a test CA for simulated
// Apple devices, and the files mdmctl needs to reach it.
type env struct {
	t       *testing.T
	srv     *mdmserver.Server
	cfg     mdmserver.Config
	url     string
	admin   string
	client  *http.Client
	apns    *fakeapns.Server
	ca      *testpki.CA
	dir     string
	rootPEM string // path of the server's root CA, for --ca-file
}

func newEnv(t *testing.T, mutate ...func(*mdmserver.Config)) *env {
	t.Helper()
	return newEnvWith(t, nil, mutate...)
}

// newEnvWith is newEnv with server options.
func newEnvWith(t *testing.T, opts []mdmserver.Option, mutate ...func(*mdmserver.Config)) *env {
	t.Helper()
	s := servertest.StartWith(t, opts, mutate...)
	e := &env{t: t, srv: s.Server, cfg: s.Config, url: s.URL, admin: s.Admin, client: s.Client,
		apns: s.APNs, ca: s.DeviceCA, dir: t.TempDir()}

	resp, err := e.client.Get(e.url + "/ca/root.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.rootPEM = filepath.Join(e.dir, "root.pem")
	if err := os.WriteFile(e.rootPEM, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// fingerprint is the SHA-256 of the server's root CA certificate.
func (e *env) fingerprint() string {
	b, err := os.ReadFile(e.rootPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	root, err := rootpin.ParseRoot(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return rootpin.Fingerprint(root)
}

// auditKeyPath is the verifier key the server wrote for auditors.
func (e *env) auditKeyPath() string { return filepath.Join(e.cfg.DataDir, "audit.pub") }

// call sends an API request directly (setup, and checks of what mdmctl did).
func (e *env) call(method, path, token string, body any, want int, out any) {
	e.t.Helper()
	apitest.Must(e.t, e.client, method, e.url+path, token, body, want, out)
}

func (e *env) token(role string) string {
	e.t.Helper()
	var tok struct{ Token string }
	name := role + "-" + time.Now().Format("150405.000000")
	e.call("POST", "/api/v1/tokens", e.admin, map[string]string{"name": name, "role": role, "person": name}, 201, &tok) // a person each
	return tok.Token
}

// cli is one way of invoking mdmctl: its environment, stdin and whether stdin is a terminal.
type cli struct {
	env   map[string]string
	stdin string
	tty   bool
}

// as returns a cli that reaches the server with token through the environment, with no
// profile file.
func (e *env) as(token string) cli {
	return cli{env: map[string]string{
		"HALE_SERVER": e.url, "HALE_TOKEN": token, "HALE_CA_FILE": e.rootPEM,
		"HALE_CONFIG": filepath.Join(e.dir, "no-profiles.json"),
	}}
}

func (c cli) with(kv ...string) cli {
	m := map[string]string{}
	for k, v := range c.env {
		m[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	c.env = m
	return c
}

type result struct {
	stdout, stderr string
	code           int
}

func (c cli) run(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := newApp()
	a.stdin, a.stdout, a.stderr = strings.NewReader(c.stdin), &stdout, &stderr
	a.getenv = func(k string) string { return c.env[k] }
	a.isTerminal = func() bool { return c.tty }
	a.pollInterval = 20 * time.Millisecond
	// Every exchange mdmctl makes is checked against the OpenAPI document, as the server's
	// own tests check theirs.
	a.wrapTransport = func(base http.RoundTripper) http.RoundTripper { return apitest.Checked(t, base) }
	code := a.run(context.Background(), args)
	return result{stdout.String(), stderr.String(), code}
}

// ok runs mdmctl and fails the test unless it exits 0.
func (c cli) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("mdmctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs mdmctl and fails the test unless it exits with code.
func (c cli) fails(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := c.run(t, args...)
	if r.code != code {
		t.Fatalf("mdmctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// okJSON runs mdmctl with -o json and decodes its output.
func (c cli) okJSON(t *testing.T, out any, args ...string) {
	t.Helper()
	r := c.ok(t, append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("mdmctl %s -o json: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
}

// lockRunner stands in for the OS lock command: it succeeds, or fails with err.
type lockRunner struct {
	mu    sync.Mutex
	err   error
	calls int
}

func (r *lockRunner) Run(context.Context, string, ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	return []byte("locked"), r.err
}

// enrollAgent enrolls an in-process agent in group and runs it until the test ends; it returns
// the device ID.
func (e *env) enrollAgent(owner, group string, runner agent.Runner) string {
	e.t.Helper()
	store, id := e.enrollOnly(owner, group)
	e.runAgent(store, runner)
	return id
}

// enrollOnly enrolls an agent that never runs: the server knows the device, nothing more.
func (e *env) enrollOnly(owner, group string) (*state.Store, string) {
	e.t.Helper()
	var en struct{ Token string }
	e.call("POST", "/api/v1/enrollments", e.admin, map[string]string{"owner": owner, "group": group, "platform": "agent", "ttl": "1h"}, 201, &en)
	store, err := state.Open(filepath.Join(e.t.TempDir(), "agent"))
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := agent.Enroll(context.Background(), store, agent.EnrollConfig{
		ServerURL: e.url, Token: en.Token, CAFingerprint: e.fingerprint(),
		Facts: agent.Facts{Hostname: owner + "-laptop", OS: "linux", OSVersion: "24.04", Platform: "linux"},
	})
	if err != nil {
		e.t.Fatalf("agent enroll: %v", err)
	}
	return store, id.DeviceID
}

func (e *env) runAgent(store *state.Store, runner agent.Runner) {
	e.t.Helper()
	collect := func(context.Context) (*policies.Posture, []agent.CollectorError) {
		now := time.Now()
		return &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: now,
			DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, now)}, nil
	}
	a, err := agent.New(store, collect, agent.WithRunner(runner), agent.WithLockCommand("/bin/lock-test"),
		agent.WithPollWait(2*time.Second), agent.WithRequestTimeout(10*time.Second),
		agent.WithIntervalBounds(50*time.Millisecond, time.Second), agent.WithCollectInterval(100*time.Millisecond),
		agent.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// waitDecided waits until the access API has a decision for the device (its first check-in or
// report was evaluated): a drill needs one to revoke.
func (e *env) waitDecided(t *testing.T, id string) {
	t.Helper()
	var dev struct{ ID string }
	e.call("GET", "/api/v1/devices/"+id, e.admin, nil, 200, &dev) // a UDID names an Apple device too
	waitFor(t, "a decision for "+id, func() bool {
		var ans struct{ Reasons []struct{ Code string } }
		e.call("GET", "/api/v1/devices/"+dev.ID+"/access", e.admin, nil, 200, &ans)
		for _, r := range ans.Reasons {
			if r.Code == "unknown_device" {
				return false
			}
		}
		return true
	})
}

// appleDevice enrolls a simulated Apple device (identity from the test CA) and runs its push
// loop until the test ends. The server needs the push certificate first (uploadPushCert).
func (e *env) appleDevice(opts ...applesim.Option) *applesim.Device {
	e.t.Helper()
	cert, key := e.ca.Issue(e.t, "sim device")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.srv.RootCAs()}}}
	all := append([]applesim.Option{applesim.WithHTTPClient(client), applesim.WithIdentity(cert, key), applesim.WithTopic(testTopic)}, opts...)
	dev, err := applesim.New(e.url+"/mdm", all...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := dev.Enroll(ctx); err != nil {
		cancel()
		e.t.Fatalf("enroll: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = dev.RunPushLoop(ctx, e.apns) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return dev
}

// pushCertFiles writes a push certificate and key for the test topic: both in one file, and
// each in its own.
func (e *env) pushCertFiles() (both, cert, key string) {
	e.t.Helper()
	certPEM, keyPEM, err := fakeapns.GeneratePushCert(testTopic, 24*time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	both, cert, key = filepath.Join(e.dir, "push.pem"), filepath.Join(e.dir, "push-cert.pem"), filepath.Join(e.dir, "push-key.pem")
	for p, b := range map[string][]byte{both: append(append([]byte{}, certPEM...), keyPEM...), cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	return both, cert, key
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
