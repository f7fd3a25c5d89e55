package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The real mdmagent binary enrolls against a running server, reports posture that is stored
// and evaluated, carries out a lock, then a selective wipe of a directory of managed data; the
// server marks the device wiped and revokes its certificate.
func TestAgentBinaryLockAndSelectiveWipe(t *testing.T) {
	srv := startServer(t)
	agentBin := buildBinary(t, "mdmagent")
	it, security, accessTok := srv.token("it"), srv.token("security"), srv.token("access")

	managed := filepath.Join(t.TempDir(), "managed")
	phi := filepath.Join(managed, "securetext")
	if err := os.MkdirAll(filepath.Join(phi, "attachments"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(phi, "messages.db"), []byte("PHI"), 0o600)
	os.WriteFile(filepath.Join(phi, "attachments", "xray.png"), []byte("PHI"), 0o600)
	keep := filepath.Join(managed, "not-managed.txt")
	os.WriteFile(keep, []byte("stays"), 0o600)

	policy := "reporting:\n  max_age: 15m\ngrace: 24h\nmanaged_data:\n  linux:\n    - " + phi + "\n"
	srv.mustCall("PUT", "/api/v1/policies/agents", it, policy, 200, nil)
	srv.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)

	var e struct{ Token string }
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"owner":"nurse.joy","group":"ward7","platform":"agent","ttl":"1h"}`, 201, &e)
	state := filepath.Join(t.TempDir(), "agent-state")
	run(t, agentBin, "enroll", "--server", srv.url, "--token", e.Token, "--state-dir", state, "--ca-fingerprint", rootFingerprint(t, srv))
	if out, err := exec.Command(agentBin, "enroll", "--server", srv.url, "--token", e.Token, "--state-dir", state).CombinedOutput(); err == nil {
		t.Fatalf("second enroll without --force succeeded: %s", out)
	}

	agent := startProcess(t, agentBin, "run", "--state-dir", state, "--wipe-root", managed, "--log-level", "debug")
	var devices struct {
		Devices []struct{ ID, State, Owner string }
	}
	srv.mustCall("GET", "/api/v1/devices?owner=nurse.joy", it, "", 200, &devices)
	if len(devices.Devices) != 1 {
		t.Fatalf("inventory: %+v", devices)
	}
	id := devices.Devices[0].ID

	// Posture reports arrive, are stored with provenance agent and evaluated.
	var ans struct {
		Allow      bool
		ReportedAt time.Time `json:"reported_at"`
		Posture    struct {
			Platform string
			OS       *struct{ Source string }
		}
	}
	waitFor(t, 30*time.Second, "a posture report", func() bool {
		srv.mustCall("GET", "/access/v1/devices/"+id, accessTok, "", 200, &ans)
		return !ans.ReportedAt.IsZero()
	})
	if ans.Posture.Platform != "linux" || ans.Posture.OS == nil || ans.Posture.OS.Source != "agent" {
		t.Fatalf("stored posture: %+v", ans.Posture)
	}

	// Lock: the agent runs it (loginctl may not exist here; then it reports failure) and reports.
	var lock struct {
		CommandID string `json:"command_id"`
	}
	srv.mustCall("POST", "/api/v1/devices/"+id+"/lock", it, `{"reason":"drill"}`, 202, &lock)
	waitFor(t, 30*time.Second, "the lock result", func() bool {
		return srv.agentCommandState(id, lock.CommandID, it) != "delivered" && srv.agentCommandState(id, lock.CommandID, it) != "queued"
	})

	// Selective wipe: the managed data goes, the rest stays, the agent removes its identity and exits.
	var wipe struct {
		CommandID string `json:"command_id"`
	}
	srv.mustCall("POST", "/api/v1/devices/"+id+"/wipe", security, `{"reason":"stolen","mode":"selective"}`, 202, &wipe)
	srv.mustCall("GET", "/access/v1/devices/"+id, accessTok, "", 200, &ans)
	if ans.Allow {
		t.Fatal("device allowed after the wipe was accepted")
	}
	if err := agent.wait(60 * time.Second); err != nil {
		t.Fatalf("agent did not exit cleanly after the wipe: %v\n%s", err, agent.output())
	}
	if _, err := os.Stat(phi); !os.IsNotExist(err) {
		t.Errorf("managed data survived the wipe: %v", err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "stays" {
		t.Errorf("unmanaged data touched: %v", err)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Errorf("agent state left after wipe: %v", entries)
	}
	var dev struct {
		State       string
		CertSerials []string `json:"cert_serials"`
	}
	srv.mustCall("GET", "/api/v1/devices/"+id, it, "", 200, &dev)
	if dev.State != "wiped" {
		t.Fatalf("device state %q after the wipe", dev.State)
	}
	if !srv.revoked(t, dev.CertSerials[0]) {
		t.Fatal("the wiped device's certificate is not on the CRL")
	}
}

func rootFingerprint(t *testing.T, s *server) string {
	t.Helper()
	resp, err := s.client.Get(s.url + "/ca/root.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:])
}
