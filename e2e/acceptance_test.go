package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/fakeapns"
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
