package agent

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
)

// TestBinaryEndToEnd builds the real mdmagent and drives it against the fake server: enroll
// with the CA fingerprint, refuse a second enroll, run as a foreground daemon, report, take a
// selective wipe, and exit 0 with its state gone.
func TestBinaryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build mdmagent: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mdmagent")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/halemdm/hale/cmd/mdmagent").CombinedOutput(); err != nil {
		t.Fatalf("building mdmagent: %v\n%s", err, out)
	}
	f := newFakeServer(t)
	dir := filepath.Join(t.TempDir(), "state")

	out, err := exec.Command(bin, "enroll", "--server", f.URL(), "--token", "tok-1", "--state-dir", dir,
		"--ca-fingerprint", colons(f.fingerprint())).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "enrolled as d_") {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "enroll", "--server", f.URL(), "--token", "tok-2", "--state-dir", dir,
		"--ca-fingerprint", f.fingerprint()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--force") {
		t.Fatalf("second enroll without --force: %v\n%s", err, out)
	}
	store, _ := state.Open(dir)
	id, err := store.LoadIdentity()
	if err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	managed := filepath.Join(root, "alice", "SecureChat")
	mustWrite(t, filepath.Join(managed, "messages.db"))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--state-dir", dir, "--wipe-root", root)
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &logs}, &syncWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	eventually(t, 20*time.Second, "a report from the daemon", func() bool { return len(f.reportsCopy()) > 0 })
	if rep := f.reportsCopy()[0]; rep.device != id.DeviceID || rep.report.Posture == nil || rep.report.Posture.Platform == "" {
		t.Fatalf("report %+v", rep)
	}
	f.enqueue(id.DeviceID, Command{ID: "c_e2e", Type: "wipe", Mode: "selective", ManagedData: []string{managed}})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exited with %v after the wipe, want status 0\n%s", err, outMu.string(&logs))
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon still running after the wipe\n%s", outMu.string(&logs))
	}
	if _, err := os.Stat(managed); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("managed data survived")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("state survived")
	}
	// Restarted after the wipe, it exits 78 and does not recreate the state directory.
	err = exec.Command(bin, "run", "--state-dir", dir).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 78 {
		t.Fatalf("run after wipe: %v, want exit status 78", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("run recreated the state directory")
	}
}

var outMu lockedString

type lockedString struct{ sync.Mutex }

func (l *lockedString) string(b *bytes.Buffer) string {
	l.Lock()
	defer l.Unlock()
	return b.String()
}

// syncWriter serializes writes to a buffer shared by the child's output and the parent.
type syncWriter struct{ w *bytes.Buffer }

func (s *syncWriter) Write(p []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	return s.w.Write(p)
}
