package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/fakeapns"
)

// mdmctl runs the mdmctl binary against one server with one token.
type mdmctl struct {
	t        *testing.T
	bin, dir string
	env      []string
}

func newMdmctl(t *testing.T, srv *accServer, token string) mdmctl {
	return mdmctl{t: t, bin: buildBinary(t, "mdmctl"), dir: t.TempDir(), env: append(os.Environ(),
		"HALE_SERVER="+srv.url, "HALE_TOKEN="+token, "HALE_CA_FILE="+filepath.Join(srv.data, "ca", "root.pem"),
		"HALE_CONFIG="+filepath.Join(t.TempDir(), "mdmctl.json"))}
}

// run runs mdmctl and returns its output and exit status.
func (m mdmctl) run(args ...string) (string, int) {
	m.t.Helper()
	cmd := exec.Command(m.bin, args...)
	cmd.Env, cmd.Dir = m.env, m.dir
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			m.t.Fatalf("mdmctl %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// must runs mdmctl and fails the test unless it exits with want.
func (m mdmctl) must(want int, args ...string) string {
	m.t.Helper()
	out, code := m.run(args...)
	if code != want {
		m.t.Fatalf("mdmctl %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// Issue 7's acceptance, over real HTTPS against the server as a process, through the mdmctl
// binary: a lost-device drill on a simulated iPhone writes its report; an IT token is
// refused the wipe of an agent and of an Apple device; a security token wipes both, the real agent
// removing its managed data and the simulated device erasing itself; the audit trail shows every
// step, and the whole log verifies against a checkpoint saved before the wipes.
func TestSecurityOperations(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	apns := fakeapns.New()
	t.Cleanup(apns.Close)
	apnsCA := filepath.Join(dir, "apns-ca.pem")
	accWrite(t, apnsCA, accPEM(apns.Certificate()))
	srv := &accServer{t: t, bin: buildBinary(t, "mdmserver"), addr: freeAddr(t), data: filepath.Join(dir, "data"),
		env: []string{"HALE_APNS_URL=" + apns.URL(), "HALE_APNS_CA_FILE=" + apnsCA}}
	srv.start()
	agentBin := buildBinary(t, "mdmagent")

	it, security := srv.token("it"), srv.token("security")
	asIT, asSecurity, asAdmin := newMdmctl(t, srv, it), newMdmctl(t, srv, security), newMdmctl(t, srv, srv.admin)
	laptop := accFixtureRoot(t, "encrypted")
	phi := filepath.Join(laptop, "home", "alice", ".local", "share", "securetext")
	policyFile := filepath.Join(dir, "hipaa.yaml")
	accWrite(t, policyFile, []byte(accHIPAAPolicy(t, phi)))
	asIT.must(0, "policy", "apply", "hipaa", policyFile)
	asIT.must(0, "policy", "assign", "hipaa", "--default")

	agent := accEnrollAgent(t, srv, agentBin, it, "nurse.joy", filepath.Join(dir, "agent"), laptop)
	agent.proc = accAgentRunner(agentBin)(t, agent, filepath.Join(laptop, "home"))
	srv.waitReported(srv.token("access"), agent.id, agent.proc)
	phone := accEnrollApple(t, srv, apns, it)

	asAdmin.must(0, "events", "create", "--audience", "messaging") // the backend the drill checks is told
	checkpoint := filepath.Join(dir, "checkpoint.txt")
	asSecurity.must(0, "audit", "checkpoint", "--save", checkpoint)

	// The drill on the phone: lock, acknowledgement, denial, revocation, proofs, report.
	reports := filepath.Join(dir, "reports")
	out := asSecurity.must(0, "drill", phone, "--report-dir", reports, "--key", filepath.Join(srv.data, "audit.pub"), "--timeout", "60s")
	written, _ := filepath.Glob(filepath.Join(reports, "drill-*"))
	if len(written) != 2 {
		t.Fatalf("drill reports: %v\n%s", written, out)
	}
	for _, f := range written {
		if b, _ := os.ReadFile(f); !strings.Contains(string(b), "device.lock") || !strings.Contains(string(b), "access.revoked") {
			t.Errorf("drill report %s does not cite the audit entries:\n%s", f, b)
		}
	}

	// IT may not wipe; security may, each device in its own way.
	asIT.must(3, "wipe", agent.id, "--mode", "selective", "--reason", "stolen", "--yes")
	asIT.must(3, "wipe", phone, "--mode", "full", "--reason", "stolen", "--yes")
	asSecurity.must(0, "wipe", agent.id, "--mode", "selective", "--reason", "stolen from the ward", "--yes")
	asSecurity.must(0, "wipe", phone, "--mode", "full", "--reason", "stolen from the ward", "--yes")
	for _, id := range []string{agent.id, phone} {
		waitFor(t, 30*time.Second, id+" wiped", func() bool {
			var d struct{ State string }
			return json.Unmarshal([]byte(asIT.must(0, "devices", "show", id, "-o", "json")), &d) == nil && d.State == "wiped"
		})
		var a struct {
			Allow   bool
			Reasons []struct{ Code, Detail string }
		}
		if err := json.Unmarshal([]byte(asIT.must(0, "access", "check", id, "-o", "json")), &a); err != nil || a.Allow ||
			!slices.Contains(accCodes(a.Reasons), "device_wiped") {
			t.Errorf("access after the wipe of %s: %+v %v", id, a, err)
		}
	}
	if _, err := os.Stat(phi); !os.IsNotExist(err) {
		t.Errorf("the agent's managed data survived the wipe: %v", err)
	}

	// The record: every step, by whom, and the log unchanged since the saved checkpoint.
	for id, want := range map[string][]string{
		agent.id: {"device.wipe", "access.revoked", "command.result"},
		phone:    {"device.lock", "command.result", "access.revoked", "device.wipe"},
	} {
		var page struct {
			Entries []struct{ Action, Role, Target string }
		}
		if err := json.Unmarshal([]byte(asSecurity.must(0, "audit", "list", "--target", id, "-o", "json")), &page); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range page.Entries {
			got = append(got, e.Action)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("audit trail of %s lacks %s: %v", id, w, got)
			}
		}
	}
	var refused struct {
		Entries []struct{ Action, Role string }
	}
	json.Unmarshal([]byte(asSecurity.must(0, "audit", "list", "--action", "auth.forbidden", "-o", "json")), &refused)
	if len(refused.Entries) != 2 || refused.Entries[0].Role != "it" {
		t.Errorf("the IT token's refused wipes on the record: %+v", refused.Entries)
	}
	verified := asAdmin.must(0, "audit", "verify", "--checkpoint", checkpoint, "--key", filepath.Join(srv.data, "audit.pub"))
	if !strings.Contains(verified, "verified") {
		t.Errorf("audit verify:\n%s", verified)
	}
}
