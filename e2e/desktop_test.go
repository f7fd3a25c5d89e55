package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installFor copies bin into dir (root-owned, 0755) so another user can run it and mdmagent
// trusts it on its allow list; it answers the copy's path.
func installFor(t *testing.T, bin, dir string) string {
	t.Helper()
	src, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(dir, filepath.Base(bin))
	dst, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Issue 22's story with real binaries: mdmserver, mdmagent serving its local socket, the example
// backend, and the example desktop app run as another user (nobody). The app gets a token
// over the socket for its own key and opens a session; an executable not on the agent's list
// gets none; after a wipe the backend hears the SET and the app's next session is refused.
func TestDesktopAppBinaries(t *testing.T) {
	requireRoot(t)
	const nobody = 65534
	// World-readable places for what the app, running as nobody, must reach.
	shared, err := os.MkdirTemp("", "hale-e2e-desktop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}

	site := newBackendSite(t, shared)
	srv := startServer(t, site.allow)
	it, security, accessTok := srv.token("it"), srv.token("security"), srv.token("access")
	managed := filepath.Join(t.TempDir(), "managed")
	phi := filepath.Join(managed, "securetext")
	if err := os.MkdirAll(phi, 0o700); err != nil {
		t.Fatal(err)
	}
	policy := "reporting:\n  max_age: 15m\ngrace: 24h\nmanaged_data:\n  linux:\n    - " + phi + "\n"
	srv.mustCall("PUT", "/api/v1/policies/agents", it, policy, 200, nil)
	srv.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)

	// The backend, receiving Hale's events.
	backend, _ := site.start(t, srv, accessTok)

	// The agent, enrolled, serving the desktop app to nobody on its socket.
	app := installFor(t, buildBinary(t, "examples/desktopapp"), shared)
	unlisted := filepath.Join(shared, "other-app")
	if err := os.Link(app, unlisted); err != nil { // the same program under a name not on the list
		t.Fatal(err)
	}
	agentBin := buildBinary(t, "mdmagent")
	var e struct{ Token string }
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"owner":"dr.grey","group":"icu","platform":"agent","ttl":"1h"}`, 201, &e)
	state := filepath.Join(t.TempDir(), "agent-state")
	run(t, agentBin, "enroll", "--server", srv.url, "--token", e.Token, "--state-dir", state, "--ca-fingerprint", rootFingerprint(t, srv))
	sock := filepath.Join(shared, "run", "agent.sock")
	agent := startProcess(t, agentBin, "run", "--state-dir", state, "--wipe-root", managed,
		"--app-allow", app, "--app-user", "nobody", "--local-socket", sock)
	var devices struct{ Devices []struct{ ID string } }
	srv.mustCall("GET", "/api/v1/devices?owner=dr.grey", it, "", 200, &devices)
	if len(devices.Devices) != 1 {
		t.Fatalf("inventory: %+v", devices)
	}
	id := devices.Devices[0].ID
	waitFor(t, 30*time.Second, "the device to be allowed", func() bool {
		var ans struct{ Allow bool }
		srv.mustCall("GET", "/access/v1/devices/"+id, accessTok, "", 200, &ans)
		return ans.Allow
	})
	waitFor(t, 10*time.Second, "the agent's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode %v", fi.Mode())
	}

	runApp := func(exe string) (string, error) {
		cmd := exec.Command(exe, "--backend", "https://"+site.addr, "--backend-ca", site.caFile, "--socket", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runApp(app)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, `"uid":"65534"`) || !strings.Contains(out, app) {
		t.Fatalf("the desktop app's session: %v %s\nagent:\n%s\nbackend:\n%s", err, out, agent.output(), backend.output())
	}
	if out, err := runApp(unlisted); err == nil || !strings.Contains(out, "app_not_allowed") {
		t.Fatalf("an executable not on the allow list: %v %s", err, out)
	}

	// Wipe: the backend hears of it, and the app's next session is refused.
	srv.mustCall("POST", "/api/v1/devices/"+id+"/wipe", security, `{"reason":"laptop stolen","mode":"selective"}`, 202, nil)
	waitFor(t, 10*time.Second, "the session-revoked event at the backend", func() bool {
		return strings.Contains(backend.output(), "session-revoked") && strings.Contains(backend.output(), id)
	})
	if out, err := runApp(app); err == nil || strings.Contains(out, `"session"`) {
		t.Fatalf("a session after the wipe: %s", out)
	}
	if err := agent.wait(60 * time.Second); err != nil {
		t.Fatalf("the agent after the wipe: %v", err)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("the socket outlived the wiped agent")
	}
}
