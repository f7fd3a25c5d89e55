// Package e2e tests Hale the way a user meets it: real binaries as processes against a real
// server over HTTPS.
package e2e

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
)

// server is a Hale server the tests call: in process (startServer), or a process (accServer),
// whose srv is then nil.
type server struct {
	t      *testing.T
	srv    *mdmserver.Server
	url    string
	client *http.Client
	admin  string
}

func startServer(t *testing.T, mutate ...func(*mdmserver.Config)) *server {
	t.Helper()
	s := servertest.Start(t, mutate...)
	return &server{t: t, srv: s.Server, url: s.URL, client: s.Client, admin: s.Admin}
}

// mustCall sends an API request and fails the test unless the status is want.
func (s *server) mustCall(method, path, token, body string, want int, out any) {
	s.t.Helper()
	var b any
	if body != "" {
		b = body
	}
	apitest.Must(s.t, s.client, method, s.url+path, token, b, want, out)
}

func (s *server) token(role string) string {
	s.t.Helper()
	var tok struct{ Token string }
	s.mustCall("POST", "/api/v1/tokens", s.admin, `{"name":"`+role+`","role":"`+role+`"}`, 201, &tok)
	return tok.Token
}

func (s *server) agentCommandState(deviceID, commandID, token string) string {
	var list struct {
		Commands []struct{ ID, State string }
	}
	s.mustCall("GET", "/api/v1/devices/"+deviceID+"/commands", token, "", 200, &list)
	for _, c := range list.Commands {
		if c.ID == commandID {
			return c.State
		}
	}
	return ""
}

// revoked reports whether the certificate serial (hex) is on the server's CRL.
func (s *server) revoked(t *testing.T, serialHex string) bool {
	resp, err := s.client.Get(s.url + "/ca/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := new(big.Int).SetString(serialHex, 16)
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(want) == 0 {
			return true
		}
	}
	return false
}

var (
	buildMu  sync.Mutex
	binaries = map[string]string{}
	binDir   string
)

// buildBinary builds ./cmd/<name> (or ./<name> when name is a path, like examples/backend)
// once per test binary run and returns its path.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := binaries[name]; ok {
		return p
	}
	if binDir == "" {
		var err error
		if binDir, err = os.MkdirTemp("", "hale-e2e-bin"); err != nil {
			t.Fatal(err)
		}
	}
	pkg := "./cmd/" + name
	if strings.Contains(name, "/") {
		pkg = "./" + name
	}
	out := filepath.Join(binDir, filepath.Base(name))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	binaries[name] = out
	return out
}

// requireRoot skips a test that runs mdmagent on fixture machines or this one unless it runs as
// root (the agent's tamper check wants its files owned by root, and it reads /etc/shadow), and
// fails it instead in CI, where a skip would pass without running anything.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test must run as root in CI: mdmagent's tamper check and /etc/shadow need it")
	}
	t.Skip("run as root: mdmagent's tamper check and /etc/shadow need it")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// run runs a binary to completion and fails the test if it fails.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// process is a binary running in the background for the test.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, nil, bin, args...)
}

// startProcessEnv starts bin with env added to this process's environment; it is killed when the
// test ends, and its output is logged if the test failed.
func startProcessEnv(t *testing.T, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its error (nil for exit status 0).
func (p *process) wait(d time.Duration) error {
	select {
	case err := <-p.done:
		return err
	case <-time.After(d):
		return fmt.Errorf("still running after %v", d)
	}
}

func (p *process) output() string { return p.out.String() }

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
