package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.yaml.in/yaml/v3"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/fixturetree"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// Sizes of the crash-safety burst: reports from accBurstDevices devices, accBurstPerDevice each;
// the wipe is queued and the server killed once accKillAfter of them were acknowledged.
const (
	accBurstDevices   = 10
	accBurstPerDevice = 100
	accKillAfter      = 400
)

// TestAcceptance is issue 8's acceptance story with every part a real process: mdmserver, two
// agents reporting posture from fixture machines, a simulated Apple device enrolling over SCEP,
// and the example messaging backend. A compliant agent is allowed and opens a backend session, an
// unencrypted one is denied for it. During a burst of 1,000 posture reports a selective wipe is
// queued and the server is killed with SIGKILL; after a restart on the same data every
// acknowledged report is there, the queued wipe reaches the agent, which removes the managed
// data, the device is wiped and denied, the backend heard of it, the audit trail shows it and
// verifies against the signed checkpoint, and `bbolt check` passes on the data.
func TestAcceptance(t *testing.T) {
	// The agent reports itself tampered with when its binary or state directory can be replaced by
	// someone other than root (collect/integrity.go), and tampering is denied at once.
	requireRoot(t)
	began := time.Now()
	phase := func(name string) {
		t.Helper()
		t.Logf("%6.1fs  %s", time.Since(began).Seconds(), name)
	}

	// 1. Binaries, and the server as a process.
	serverBin := buildBinary(t, "mdmserver")
	agentBin := buildBinary(t, "mdmagent")
	backendBin := buildBinary(t, "examples/backend")
	runAgent := accAgentRunner(agentBin)
	phase("binaries built")

	dir := t.TempDir()
	apns := fakeapns.New()
	t.Cleanup(apns.Close)
	apnsCA := filepath.Join(dir, "apns-ca.pem")
	backendCA := testpki.NewCA(t, "backend CA")
	backendCAFile := filepath.Join(dir, "backend-ca.pem")
	accWrite(t, apnsCA, accPEM(apns.Certificate()))
	accWrite(t, backendCAFile, backendCA.PEM)
	// The example backend listens on loopback: the server may push there because the operator
	// allow-lists exactly that address.
	backendAddr := freeAddr(t)
	srv := &accServer{t: t, bin: serverBin, addr: freeAddr(t), data: filepath.Join(dir, "data"), env: []string{
		"HALE_APNS_URL=" + apns.URL(), "HALE_APNS_CA_FILE=" + apnsCA, "HALE_SSF_CA_FILE=" + backendCAFile,
		"HALE_SSF_ALLOWED_DESTINATIONS=" + backendAddr,
		// Twelve agents and an Apple device enroll from one address within seconds.
		"HALE_ENROLL_RATE=1000", "HALE_ENROLL_BURST=1000",
	}}
	srv.start()
	phase("mdmserver serving")

	// 2. Tokens per role; the HIPAA policy as the default. Its managed_data names paths on a real
	// machine; here they are the compliant fixture machine's copies.
	it, security, accessTok := srv.token("it"), srv.token("security"), srv.token("access")
	laptopA := accFixtureRoot(t, "encrypted")
	laptopB := accFixtureRoot(t, "unencrypted")
	phiHome := filepath.Join(laptopA, "home", "alice", ".local", "share", "securetext")
	phiOpt := filepath.Join(laptopA, "opt", "securetext")
	unmanaged := filepath.Join(laptopA, "home", "alice", "Documents", "notes.txt")
	policy := accHIPAAPolicy(t, phiHome, phiOpt)
	var put struct {
		Name    string
		Version int
	}
	srv.mustCall("PUT", "/api/v1/policies/hipaa", it, policy, 200, &put)
	if put.Name != "hipaa" || put.Version < 1 {
		t.Fatalf("PUT policy answered %+v", put)
	}
	srv.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"hipaa"}`, 200, nil)

	// 3. Two agents: enroll with the real mdmagent, then run with a fixture machine each.
	agentA := accEnrollAgent(t, srv, agentBin, it, "nurse.joy", filepath.Join(dir, "agent-a"), laptopA)
	agentB := accEnrollAgent(t, srv, agentBin, it, "nurse.ratched", filepath.Join(dir, "agent-b"), laptopB)
	// The device certificate is read now: the wipe removes it from the state directory.
	certA, err := tls.LoadX509KeyPair(filepath.Join(agentA.state, state.CertFile), filepath.Join(agentA.state, state.KeyFile))
	if err != nil {
		t.Fatalf("agent A's identity: %v", err)
	}
	certB, err := tls.LoadX509KeyPair(filepath.Join(agentB.state, state.CertFile), filepath.Join(agentB.state, state.KeyFile))
	if err != nil {
		t.Fatalf("agent B's identity: %v", err)
	}
	agentA.proc = runAgent(t, agentA, filepath.Join(laptopA, "home"), filepath.Join(laptopA, "opt"))
	agentB.proc = runAgent(t, agentB, filepath.Join(laptopB, "home"), filepath.Join(laptopB, "opt"))
	ansA := srv.waitReported(accessTok, agentA.id, agentA.proc)
	ansB := srv.waitReported(accessTok, agentB.id, agentB.proc)
	phase("both agents enrolled and reported")

	if !ansA.Allow {
		t.Fatalf("the compliant machine is denied: %+v", ansA.Reasons)
	}
	if !ansA.Compliant {
		// Allowed only within the policy's grace period: it will be denied in a day.
		t.Errorf("the compliant machine is not compliant (allowed only in grace until %s): reasons %+v", ansA.GraceUntil, ansA.Reasons)
	}
	if ansA.Posture == nil || ansA.Posture.DiskEncrypted == nil || !ansA.Posture.DiskEncrypted.Value || ansA.Posture.DiskEncrypted.Source != "agent" {
		t.Errorf("agent A's stored posture: %+v", ansA.Posture)
	}
	if ansB.Allow || !slices.Contains(accCodes(ansB.Reasons), policies.CodeEncryptionOff) {
		t.Fatalf("the unencrypted machine: allow=%v reasons %+v, want denied with encryption_off", ansB.Allow, ansB.Reasons)
	}
	for _, id := range []string{agentA.id, agentB.id} {
		srv.checkDeviceContract(it, id, "agent", "active")
	}

	// 4. A simulated Apple device installs an enrollment profile, gets its identity over SCEP
	// from the server process, checks in, and answers the posture queries pushed to it.
	apple := accEnrollApple(t, srv, apns, it)
	phase("Apple device enrolled over SCEP and answered its queries")

	// 5. The example backend, receiving the server's events. Agent A opens a session with its
	// device certificate; agent B is refused.
	backend := accStartBackend(t, srv, backendBin, backendCA, accessTok, dir, backendAddr)
	if code, body := backend.session(certA); code != http.StatusOK || !strings.Contains(body, agentA.id) {
		t.Fatalf("agent A's session: %d %s\n%s", code, body, accLastLines(backend.proc.output(), 40))
	}
	if code, body := backend.session(certB); code != http.StatusForbidden {
		t.Errorf("agent B's session: %d %s, want 403", code, body)
	}
	phase("backend session opened for agent A, refused for agent B")

	// 6. Crash safety. Agent A stops first, so the wipe is still queued when the server dies.
	if err := agentA.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agentA.proc.wait(30 * time.Second); err != nil {
		t.Fatalf("agent A after SIGTERM: %v\n%s", err, accLastLines(agentA.proc.output(), 40))
	}
	burst := make([]accBurstDevice, accBurstDevices)
	for i := range burst {
		cert, id := enrollDevice(t, srv.server, it)
		burst[i] = accBurstDevice{id: id, client: srv.mtlsClient(cert)}
	}
	phase(fmt.Sprintf("%d burst devices enrolled", len(burst)))

	var wipe struct {
		CommandID   string `json:"command_id"`
		State       string `json:"state"`
		DeviceState string `json:"device_state"`
	}
	b := accRunBurst(srv.url, burst, func() {
		srv.mustCall("POST", "/api/v1/devices/"+agentA.id+"/wipe", security, `{"reason":"reported stolen from ward 7","mode":"selective"}`, 202, &wipe)
		srv.kill()
	})
	phase(fmt.Sprintf("burst: %d of %d reports acknowledged, %d sent after the kill got no answer; wipe %s accepted, then SIGKILL",
		b.acked, accBurstDevices*accBurstPerDevice, b.unanswered, wipe.CommandID))
	for _, e := range b.errors {
		t.Errorf("burst: %s", e)
	}
	if wipe.CommandID == "" {
		t.Fatal("the wipe was not accepted before the kill")
	}
	if b.acked < accKillAfter {
		t.Fatalf("only %d reports were acknowledged before the burst ended", b.acked)
	}
	if b.acked == accBurstDevices*accBurstPerDevice {
		t.Fatalf("every report was acknowledged before the kill: the kill interrupted nothing")
	}

	srv.start()
	phase("mdmserver restarted on the same data")

	// Every acknowledged report is stored: for each device, the stored posture is at least as
	// new as the last report the server acknowledged.
	for i, d := range burst {
		if b.last[i].IsZero() {
			continue
		}
		var ans accAccess
		srv.mustCall("GET", "/access/v1/devices/"+d.id, accessTok, "", 200, &ans)
		if ans.Posture == nil || ans.Posture.DiskEncrypted == nil {
			t.Errorf("burst device %s: no posture after the restart (last acknowledged report observed %s)", d.id, b.last[i].Format(time.RFC3339Nano))
			continue
		}
		if got := ans.Posture.DiskEncrypted.ObservedAt; got.Before(b.last[i]) {
			t.Errorf("burst device %s lost an acknowledged report: stored report observed %s, last acknowledged %s",
				d.id, got.Format(time.RFC3339Nano), b.last[i].Format(time.RFC3339Nano))
		}
	}

	// The wipe outlived the crash: still queued, and the device denied meanwhile.
	if st := srv.agentCommandState(agentA.id, wipe.CommandID, security); st != "queued" {
		t.Errorf("wipe %s after the restart: state %q, want queued", wipe.CommandID, st)
	}
	var pending accAccess
	srv.mustCall("GET", "/access/v1/devices/"+agentA.id, accessTok, "", 200, &pending)
	if pending.Allow || !slices.Contains(accCodes(pending.Reasons), posture.ReasonWipePending) {
		t.Errorf("agent A after the restart, its wipe pending: allow=%v reasons %+v, want denied with %s", pending.Allow, pending.Reasons, posture.ReasonWipePending)
	}

	// Agent A comes back: it takes the wipe, removes the managed data and its own identity,
	// reports the result and exits 0.
	agentA.proc = runAgent(t, agentA, filepath.Join(laptopA, "home"), filepath.Join(laptopA, "opt"))
	if err := agentA.proc.wait(60 * time.Second); err != nil {
		t.Fatalf("agent A after the wipe: %v, want exit status 0\n%s", err, accLastLines(agentA.proc.output(), 60))
	}
	phase("agent A took the wipe and exited")
	for _, p := range []string{phiHome, phiOpt} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("managed data %s survived the wipe: %v", p, err)
		}
	}
	if b, err := os.ReadFile(unmanaged); err != nil || string(b) != "not managed\n" {
		t.Errorf("unmanaged file touched by the wipe: %q %v", b, err)
	}
	if entries, _ := os.ReadDir(agentA.state); len(entries) != 0 {
		t.Errorf("agent state left after the wipe: %v", entries)
	}
	var dev struct {
		State       string
		CertSerials []string `json:"cert_serials"`
	}
	srv.mustCall("GET", "/api/v1/devices/"+agentA.id, security, "", 200, &dev)
	if dev.State != "wiped" {
		t.Errorf("agent A's state after the wipe result: %q, want wiped", dev.State)
	}
	if st := srv.agentCommandState(agentA.id, wipe.CommandID, security); st != "acknowledged" {
		t.Errorf("wipe command state %q after the agent's result", st)
	}
	var wiped accAccess
	srv.mustCall("GET", "/access/v1/devices/"+agentA.id, accessTok, "", 200, &wiped)
	if wiped.Allow || !slices.Contains(accCodes(wiped.Reasons), posture.ReasonWiped) {
		t.Errorf("access answer for the wiped device: allow=%v reasons %+v, want denied with %s", wiped.Allow, wiped.Reasons, posture.ReasonWiped)
	}
	if len(dev.CertSerials) == 0 || !srv.revoked(t, dev.CertSerials[0]) {
		t.Errorf("the wiped device's certificate %v is not on the CRL", dev.CertSerials)
	}

	// The backend heard of it and refuses the device.
	waitFor(t, 30*time.Second, "the session-revoked event for agent A at the backend", func() bool {
		for _, l := range strings.Split(backend.proc.output(), "\n") {
			if strings.Contains(l, "session-revoked") && strings.Contains(l, "device="+agentA.id) {
				return true
			}
		}
		return false
	})
	if code, body := backend.session(certA); code != http.StatusForbidden {
		t.Errorf("agent A's session after the wipe: %d %s, want 403", code, body)
	}

	// The Apple device and the other agent are still in the inventory.
	var appleDev struct{ State, Platform string }
	srv.mustCall("GET", "/api/v1/devices/"+apple, it, "", 200, &appleDev)
	if appleDev.Platform != "apple" || appleDev.State != "active" {
		t.Errorf("Apple device after the restart: %+v", appleDev)
	}
	phase("wipe delivered after the crash; device wiped, denied and revoked; backend refused it")

	// 7. The audit trail.
	var trail struct{ Entries []audit.Entry }
	srv.mustCall("GET", "/api/v1/audit?target="+agentA.id, security, "", 200, &trail)
	var wipeEntry, resultEntry *audit.Entry
	for i := range trail.Entries {
		e := &trail.Entries[i]
		switch {
		case e.Action == "device.wipe" && e.Outcome == audit.OutcomeOK && e.Details["command_id"] == wipe.CommandID:
			wipeEntry = e
		case e.Action == "command.result" && e.Details["command_id"] == wipe.CommandID:
			resultEntry = e
		}
	}
	if wipeEntry == nil || !strings.HasPrefix(wipeEntry.Actor, "token:") || wipeEntry.Role != "security" || wipeEntry.Details["mode"] != "selective" {
		t.Errorf("audit trail of %s has no device.wipe by the security token for %s: %+v", agentA.id, wipe.CommandID, wipeEntry)
	}
	if resultEntry == nil || resultEntry.Outcome != audit.OutcomeOK || resultEntry.Actor != "device:"+agentA.id || resultEntry.Details["status"] != "done" {
		t.Errorf("audit trail of %s has no successful command.result from the device for %s: %+v", agentA.id, wipe.CommandID, resultEntry)
	}
	srv.verifyAuditExport(security, wipeEntry)
	phase("audit trail shows the wipe and its result; the export verifies against the signed checkpoint")

	// Graceful stop, then the store's integrity.
	srv.stop()
	accCheckBolt(t, accDatabases(t, srv.data)...)
	phase("SIGTERM: stopped cleanly; bbolt check OK")
}

// accServer is mdmserver as a process on a fixed address and data directory, so that it can be
// killed and started again. The embedded *server carries the shared API helpers; its in-process
// srv field stays nil.
type accServer struct {
	*server
	t               *testing.T
	bin, addr, data string
	env             []string
	roots           *x509.CertPool
	proc            *process
}

// start runs the server and waits until it serves; the client trusts DATA/ca/root.pem.
func (s *accServer) start() {
	t := s.t
	t.Helper()
	p := startProcessEnv(t, s.env, s.bin, "serve", "--listen", s.addr, "--data", s.data, "--public-url", "https://"+s.addr)
	s.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for !healthy(s.addr) {
		select {
		case err := <-p.done:
			t.Fatalf("mdmserver exited before serving: %v\n%s", err, accLastLines(p.output(), 60))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mdmserver not serving on %s after 60s:\n%s", s.addr, accLastLines(p.output(), 60))
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

// accAgent is an agent enrolled with `mdmagent enroll`, its fixture machine and its process.
type accAgent struct {
	id, state, root string
	proc            *process
}

func accEnrollAgent(t *testing.T, srv *accServer, bin, it, owner, stateDir, root string) *accAgent {
	t.Helper()
	var e struct{ Token string }
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"owner":"`+owner+`","group":"ward7","platform":"agent","ttl":"1h"}`, 201, &e)
	run(t, bin, "enroll", "--server", srv.url, "--token", e.Token, "--state-dir", stateDir, "--ca-fingerprint", rootFingerprint(t, srv.server))
	st, err := state.OpenExisting(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return &accAgent{id: id.DeviceID, state: stateDir, root: root}
}

// accAgentRunner returns how to run an enrolled agent on its fixture machine: `mdmagent run`
// with the hidden --posture-root flag, which collects from the fixture tree instead of /.
func accAgentRunner(agentBin string) func(t *testing.T, a *accAgent, wipeRoots ...string) *process {
	return func(t *testing.T, a *accAgent, wipeRoots ...string) *process {
		t.Helper()
		args := []string{"run", "--state-dir", a.state, "--posture-root", a.root, "--log-level", "debug"}
		for _, r := range wipeRoots {
			args = append(args, "--wipe-root", r)
		}
		return startProcess(t, agentBin, args...)
	}
}

// accFixtureRoot builds a fixture machine in a temporary directory: testdata/acceptance/roots/
// laptop (root and swap on LUKS, KDE locking after 4m5s, Secure Boot, Ubuntu 24.04) with its
// symlinks, and for "unencrypted" the overlay that puts the root on a plain partition.
func accFixtureRoot(t *testing.T, kind string) string {
	t.Helper()
	dst := fixturetree.Copy(t, filepath.Join("testdata", "acceptance", "roots", "laptop"), filepath.Join(t.TempDir(), kind))
	// The user's files: the messaging app's data a selective wipe removes, and a file it keeps.
	// Made here rather than kept in testdata, which holds only the machine's configuration.
	for name, content := range map[string]string{
		"home/alice/.local/share/securetext/messages.db":          "PHI: message store\n",
		"home/alice/.local/share/securetext/attachments/xray.png": "PHI: x-ray\n",
		"opt/securetext/cache.bin":                                "PHI: cached attachment\n",
		"home/alice/Documents/notes.txt":                          "not managed\n",
	} {
		p := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if kind == "unencrypted" {
		// The overlay's files replace the tree's (os.CopyFS does not overwrite).
		overlay := os.DirFS(filepath.Join("testdata", "acceptance", "overlays", kind))
		err := fs.WalkDir(overlay, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(overlay, p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, filepath.FromSlash(p)), b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// accHIPAAPolicy returns the example HIPAA policy with its Linux managed_data replaced by paths.
func accHIPAAPolicy(t *testing.T, managed ...string) string {
	t.Helper()
	var raw []byte
	var err error
	for _, p := range []string{"../examples/policies/hipaa-texting.yaml", "../policies/testdata/hipaa-texting.yaml"} {
		if raw, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no HIPAA policy: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("HIPAA policy: %v", err)
	}
	md, _ := doc["managed_data"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		doc["managed_data"] = md
	}
	md["linux"] = managed
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// accEnrollApple uploads a push certificate for the fake APNs, fetches an Apple enrollment
// profile, enrolls a simulated device with it over SCEP and MDM check-ins, and waits until the
// posture queries queued at enrollment were pushed, fetched and answered. It returns the
// device's inventory ID.
func accEnrollApple(t *testing.T, srv *accServer, apns *fakeapns.Server, it string) string {
	t.Helper()
	const topic = "com.apple.mgmt.External.3b5e5b2c-8f1a-4d0e-9c55-hale-acceptance"
	certPEM, keyPEM, err := fakeapns.GeneratePushCert(topic, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var pc struct{ Topic string }
	srv.mustCall("PUT", "/api/v1/pushcert", srv.admin, string(append(certPEM, keyPEM...)), 200, &pc)
	if pc.Topic != topic {
		t.Fatalf("push certificate topic %q", pc.Topic)
	}
	var e struct {
		ProfileURL string `json:"profile_url"`
	}
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"owner":"dr.grey","group":"icu","platform":"apple","ttl":"1h"}`, 201, &e)
	if !strings.HasPrefix(e.ProfileURL, srv.url+"/enroll/apple/") {
		t.Fatalf("profile_url %q is not under the public URL %s", e.ProfileURL, srv.url)
	}
	resp, err := srv.client.Get(e.ProfileURL)
	if err != nil {
		t.Fatal(err)
	}
	profile, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", e.ProfileURL, resp.StatusCode, profile)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dev, err := applesim.EnrollFromProfile(ctx, srv.client, profile)
	if err != nil {
		t.Fatalf("SCEP enrollment against the server process: %v", err)
	}
	if err := dev.Enroll(ctx); err != nil {
		t.Fatalf("MDM check-in with the SCEP identity: %v", err)
	}
	loop := make(chan struct{})
	go func() { defer close(loop); dev.RunPushLoop(ctx, apns) }()
	t.Cleanup(func() { cancel(); <-loop })

	id := dev.Certificate().Subject.CommonName
	var list struct {
		Devices []struct {
			ID, Platform, State, Group string
			EnrollmentID               string `json:"enrollment_id"`
		}
	}
	srv.mustCall("GET", "/api/v1/devices?owner=dr.grey", it, "", 200, &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != id || list.Devices[0].Platform != "apple" ||
		list.Devices[0].EnrollmentID != dev.UDID() || list.Devices[0].State != "active" || list.Devices[0].Group != "icu" {
		t.Fatalf("inventory after the Apple enrollment (device %s, UDID %s): %+v", id, dev.UDID(), list.Devices)
	}
	srv.checkDeviceContract(it, id, "apple", "active")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cmds struct {
			Commands []struct {
				RequestType string `json:"request_type"`
				State       string
				RequestedBy string `json:"requested_by"`
			}
		}
		srv.mustCall("GET", "/api/v1/devices/"+id+"/commands", it, "", 200, &cmds)
		answered := 0
		for _, c := range cmds.Commands {
			if c.RequestedBy == "system:enrollment" && c.State == "acknowledged" {
				answered++
			}
		}
		if answered >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Apple device's posture queries were not answered in 30s: %+v", cmds.Commands)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return id
}

// accBackend is the example backend as a process.
type accBackend struct {
	proc  *process
	addr  string
	roots *x509.CertPool
}

func accStartBackend(t *testing.T, srv *accServer, bin string, ca *testpki.CA, accessTok, dir, addr string) *accBackend {
	t.Helper()
	certFile, keyFile := writeServerCert(t, ca, dir, "127.0.0.1")
	rootFile := filepath.Join(dir, "hale-root.pem")
	accWrite(t, rootFile, srv.get(t, "/ca/root.pem"))
	var ssf struct{ Issuer string }
	if err := json.Unmarshal(srv.get(t, "/.well-known/ssf-configuration"), &ssf); err != nil || ssf.Issuer == "" {
		t.Fatalf("SSF configuration: %v %+v", err, ssf)
	}
	b := &accBackend{addr: addr, roots: ca.Pool()}
	b.proc = startProcess(t, bin, "--server", srv.url, "--ca", rootFile, "--token", accessTok,
		"--issuer", ssf.Issuer, "--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile)
	receiver := "https://" + addr + "/ssf/events"
	// The backend's stream belongs to its own access token.
	srv.mustCall("POST", "/ssf/v1/stream", accessTok,
		`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"`+receiver+`"},"aud":"`+receiver+`"}`, 201, nil)
	waitFor(t, 10*time.Second, "the backend to listen", func() bool { code, _ := b.session(tls.Certificate{}); return code > 0 })
	return b
}

// session asks the backend for a session, presenting cert (none when empty).
func (b *accBackend) session(cert tls.Certificate) (int, string) {
	cfg := &tls.Config{RootCAs: b.roots}
	if len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Post("https://"+b.addr+"/sessions", "", nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// accBurstDevice is a device enrolled through the API that sends burst reports.
type accBurstDevice struct {
	id     string
	client *http.Client
}

// accBurst is what a burst saw: per device the observed_at marker of the last report the server
// acknowledged, how many were acknowledged, and what went wrong before the kill.
type accBurst struct {
	last       []time.Time
	acked      int64
	unanswered int64
	errors     []string
}

// accRunBurst sends accBurstPerDevice reports from every device, one after another per device
// with the nonce each answer carries. Each report's disk_encrypted claim is observed at a
// distinct, increasing instant, which identifies it in the stored posture. After accKillAfter
// acknowledgements, crash runs (in this goroutine, while the reports keep going); every worker
// stops at its first request that gets no answer.
func accRunBurst(url string, devices []accBurstDevice, crash func()) accBurst {
	b := accBurst{last: make([]time.Time, len(devices))}
	var acked, unanswered atomic.Int64
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		b.errors = append(b.errors, fmt.Sprintf(format, args...))
	}
	trigger := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	base := time.Now().Add(-2 * time.Minute)
	for i, d := range devices {
		wg.Go(func() {
			nonce, status, body, err := accNonce(d.client, url)
			if err != nil || status != 200 {
				fail("%s: nonce: %d %v %s", d.id, status, err, body)
				return
			}
			retries := 0
			for n := 1; n <= accBurstPerDevice; n++ {
				observed := base.Add(time.Duration(n) * time.Millisecond)
				now := time.Now().UTC()
				claim := map[string]any{"value": true, "source": "agent", "observed_at": observed}
				report := map[string]any{"nonce": nonce, "sequence": n, "collected_at": now, "posture": map[string]any{
					"platform": "linux", "reported_at": now, "disk_encrypted": claim, "swap_encrypted": claim}}
				var ans struct{ Nonce string }
				status, body, err := accPost(d.client, url+"/agent/v1/report", report, &ans)
				switch {
				case err != nil:
					unanswered.Add(1)
					return // the server is gone
				case status == http.StatusConflict && retries < 3:
					// A refused nonce loses nothing: fetch another and send the report again.
					retries++
					var code int
					if nonce, code, body, err = accNonce(d.client, url); err != nil {
						unanswered.Add(1)
						return
					} else if code != 200 {
						fail("%s: nonce after a 409: %d %s", d.id, code, body)
						return
					}
					n--
					continue
				case status != 200 || ans.Nonce == "":
					fail("%s: report %d: %d %s", d.id, n, status, body)
					return
				}
				nonce = ans.Nonce
				b.last[i] = observed
				if acked.Add(1) == accKillAfter {
					once.Do(func() { close(trigger) })
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-trigger:
		crash()
	case <-done:
		// Fewer than accKillAfter acknowledgements: the caller reports it.
	}
	<-done
	b.acked, b.unanswered = acked.Load(), unanswered.Load()
	return b
}

func accNonce(c *http.Client, url string) (nonce string, status int, body []byte, err error) {
	req, _ := http.NewRequest("GET", url+"/agent/v1/nonce", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, nil, err
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var ans struct{ Nonce string }
	_ = json.Unmarshal(body, &ans)
	return ans.Nonce, resp.StatusCode, body, nil
}

func accPost(c *http.Client, url string, v, out any) (int, []byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(j))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, nil, err // a half-read answer is no acknowledgement
	}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, body, nil
		}
	}
	return resp.StatusCode, body, nil
}

// accDatabases returns every database file in the data directory: hale.db, which holds the
// CA's database too (no DATA/ca/ca.db any more), and any other *.db file found there.
func accDatabases(t *testing.T, data string) []string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(data, "ca", "ca.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DATA/ca/ca.db exists (%v): the CA's database belongs in hale.db", err)
	}
	var paths []string
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && filepath.Ext(path) == ".db" {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(paths, filepath.Join(data, "hale.db")) {
		t.Fatalf("no hale.db in %s: %v", data, paths)
	}
	return paths
}

// accCheckBolt runs `bbolt check` on database files, with the bbolt command built from the
// module cache; if it cannot be built, the same check (tx.Check) runs in process.
func accCheckBolt(t *testing.T, paths ...string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bbolt")
	build := exec.Command("go", "build", "-o", bin, "go.etcd.io/bbolt/cmd/bbolt")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	if err != nil {
		t.Logf("cannot build the bbolt command (%v: %s); checking in process", err, bytes.TrimSpace(out))
	}
	for _, path := range paths {
		if err == nil {
			if out, err := exec.Command(bin, "check", path).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "OK" {
				t.Errorf("bbolt check %s: %v\n%s", path, err, out)
			}
			continue
		}
		db, oerr := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
		if oerr != nil {
			t.Errorf("open %s: %v", path, oerr)
			continue
		}
		cerr := db.View(func(tx *bbolt.Tx) error {
			var errs []error
			for e := range tx.Check() {
				errs = append(errs, e)
			}
			return errors.Join(errs...)
		})
		db.Close()
		if cerr != nil {
			t.Errorf("bbolt check %s: %v", path, cerr)
		}
	}
}

func accWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func accPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// accLastLines returns the last n lines of s, for failure messages about chatty processes.
func accLastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
