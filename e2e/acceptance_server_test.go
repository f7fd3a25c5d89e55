package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
)

// accServer is mdmserver as a process on a fixed address and data directory, so that it can be
// killed and started again. The embedded *server carries the shared API helpers; its in-process
// srv field stays nil.
type accServer struct {
	*server
	t               *testing.T
	bin, addr, data string
	env             []string
	args            []string // more flags for serve (--standby)
	roots           *x509.CertPool
	proc            *process
}

// start runs the server and waits until it serves; the client trusts DATA/ca/root.pem.
func (s *accServer) start() {
	s.t.Helper()
	s.launch()
	s.attach(60 * time.Second)
}

// launch starts the server process.
func (s *accServer) launch() {
	s.proc = startProcessEnv(s.t, s.env, s.bin, append([]string{"serve", "--listen", s.addr, "--data", s.data, "--public-url", "https://" + s.addr}, s.args...)...)
}

// attach waits up to wait for the launched server to serve, then reads its root and admin token.
func (s *accServer) attach(wait time.Duration) {
	t := s.t
	t.Helper()
	p := s.proc
	deadline := time.Now().Add(wait)
	for !healthy(s.addr) {
		select {
		case err := <-p.done:
			t.Fatalf("mdmserver exited before serving: %v\n%s", err, accLastLines(p.output(), 60))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mdmserver not serving on %s after %v:\n%s", s.addr, wait, accLastLines(p.output(), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
	root, err := os.ReadFile(filepath.Join(s.data, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s.roots = x509.NewCertPool()
	if !s.roots.AppendCertsFromPEM(root) {
		t.Fatalf("DATA/ca/root.pem holds no certificate")
	}
	tok, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.server = &server{t: t, url: "https://" + s.addr, admin: strings.TrimSpace(string(tok)),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots}}}}
}

// kill ends the server with SIGKILL: no shutdown code runs.
func (s *accServer) kill() {
	s.t.Helper()
	if err := s.proc.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("kill mdmserver: %v", err)
	}
	err := s.proc.wait(10 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		s.t.Fatalf("mdmserver after SIGKILL: %v", err)
	}
}

// stop ends the server with SIGTERM and requires a clean exit.
func (s *accServer) stop() {
	s.t.Helper()
	if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	if err := s.proc.wait(30 * time.Second); err != nil {
		s.t.Fatalf("mdmserver after SIGTERM: %v\n%s", err, accLastLines(s.proc.output(), 40))
	}
	if !strings.Contains(s.proc.output(), "stopped cleanly") {
		s.t.Fatalf("no clean stop in the log:\n%s", accLastLines(s.proc.output(), 40))
	}
}

func (s *accServer) mtlsClient(cert tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.roots, Certificates: []tls.Certificate{cert}}}}
}

// accAccess is the part of the access answer the test reads.
type accAccess struct {
	Allow      bool
	Compliant  bool
	Reasons    []struct{ Code, Detail string }
	GraceUntil time.Time `json:"grace_until"`
	ReportedAt time.Time `json:"reported_at"`
	Posture    *struct {
		DiskEncrypted *struct {
			Value      bool
			Source     string
			ObservedAt time.Time `json:"observed_at"`
		} `json:"disk_encrypted"`
	}
}

func accCodes(rs []struct{ Code, Detail string }) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

// waitReported waits for a device's first posture report and returns its access answer.
func (s *accServer) waitReported(accessTok, id string, p *process) accAccess {
	s.t.Helper()
	var ans accAccess
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mustCall("GET", "/access/v1/devices/"+id, accessTok, "", 200, &ans)
		if !ans.ReportedAt.IsZero() {
			return ans
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no posture report from %s in 30s:\n%s", id, accLastLines(p.output(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkDeviceContract checks GET /api/v1/devices/{id} against DESIGN.md's interface contract.
func (s *accServer) checkDeviceContract(token, id, platform, state string) {
	s.t.Helper()
	var d map[string]json.RawMessage
	s.mustCall("GET", "/api/v1/devices/"+id, token, "", 200, &d)
	var missing []string
	for _, k := range []string{"id", "platform", "owner", "group", "state", "enrolled_at", "last_seen", "verdict", "posture"} {
		if _, ok := d[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		s.t.Errorf("GET /api/v1/devices/%s lacks %v of the contract's fields; keys: %v", id, missing, slices.Sorted(maps.Keys(d)))
	}
	if string(d["platform"]) != `"`+platform+`"` || string(d["state"]) != `"`+state+`"` {
		s.t.Errorf("GET /api/v1/devices/%s: platform %s state %s, want %s %s", id, d["platform"], d["state"], platform, state)
	}
}

// verifyAuditExport verifies the whole export against a fresh signed checkpoint with the key
// the server wrote to DATA/audit.pub, and that the checkpoint covers want.
func (s *accServer) verifyAuditExport(token string, want *audit.Entry) {
	t := s.t
	t.Helper()
	var cp struct {
		Checkpoint  string `json:"checkpoint"`
		VerifierKey string `json:"verifier_key"`
	}
	s.mustCall("GET", "/api/v1/audit/checkpoint", token, "", 200, &cp)
	pub, err := os.ReadFile(filepath.Join(s.data, "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(string(pub))
	if cp.VerifierKey != vkey {
		t.Errorf("the checkpoint's verifier_key %q is not DATA/audit.pub %q", cp.VerifierKey, vkey)
	}
	verifier, err := audit.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.url+"/api/v1/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	export, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /api/v1/audit/export: %d %s", resp.StatusCode, export)
	}
	res, err := audit.VerifyExport(bytes.NewReader(export), []byte(cp.Checkpoint), verifier)
	if err != nil {
		t.Fatalf("the audit export does not verify against the checkpoint: %v", err)
	}
	if res.CheckpointSize == 0 || res.Entries < res.CheckpointSize {
		t.Errorf("verified export: %+v", res)
	}
	if want != nil && want.Index >= res.CheckpointSize {
		t.Errorf("the wipe's audit entry %d is past the checkpoint's %d entries", want.Index, res.CheckpointSize)
	}
	t.Logf("audit export: %d entries, checkpoint of %d verified", res.Entries, res.CheckpointSize)
}
