package localapi

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/localproto"
)

// nobody is the user the "messaging app" runs as in these tests.
const nobody = 65534

// TestMain lets this test binary play the desktop app: with HALE_LOCALAPI_APP set to a socket
// path it asks for a token there and prints the agent's last answer.
func TestMain(m *testing.M) {
	if path := os.Getenv("HALE_LOCALAPI_APP"); path != "" {
		os.Exit(appMain(path))
	}
	os.Exit(m.Run())
}

func appMain(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println(`{"error":{"code":"dial","detail":` + fmt.Sprintf("%q", err.Error()) + `}}`)
		return 0
	}
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(req localproto.Request) localproto.Response {
		b, _ := json.Marshal(req)
		c.Write(append(b, '\n'))
		line, _ := r.ReadBytes('\n')
		var resp localproto.Response
		_ = json.Unmarshal(line, &resp)
		return resp
	}
	n := say(localproto.Request{Op: localproto.OpNonce})
	out := n
	if n.Error == nil {
		k, _ := ecdsa.GenerateKey(ecdsaCurve, rand.Reader)
		p, _ := localproto.NewProof(&k.PublicKey, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) },
			n.Nonce, "jti", time.Now())
		out = say(localproto.Request{Op: localproto.OpToken, Proof: p})
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// appAs runs a copy of this test binary (installed root-owned, 0755, where nobody can reach
// it) as uid against the socket at path, and answers the agent's last answer to it.
func appAs(t *testing.T, exe, path string, uid uint32) localproto.Response {
	t.Helper()
	return appRun(t, exe, path, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}, nil)
}

// appRun runs the app with attr (nil: as this user), extra environment and arguments.
func appRun(t *testing.T, exe, path string, attr *syscall.SysProcAttr, env []string, args ...string) localproto.Response {
	t.Helper()
	cmd := exec.Command(exe, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append([]string{"HALE_LOCALAPI_APP=" + path}, env...)
	cmd.SysProcAttr = attr
	uid := os.Getuid()
	if attr != nil && attr.Credential != nil {
		uid = int(attr.Credential.Uid)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the app as uid %d: %v %s", uid, err, out)
	}
	var r localproto.Response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("the app printed %q: %v", out, err)
	}
	return r
}

// installApp copies this test binary into a fresh world-readable directory and answers the
// copy's path and the directory (for the socket).
func installApp(t *testing.T) (string, string) {
	dir, err := os.MkdirTemp("", "hale-localapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(selfExe(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "chat-app")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	real, err := CheckExecutable(exe)
	if err != nil {
		t.Fatal(err)
	}
	return real, dir
}

// A process of another user: the app running as nobody gets a token only when nobody is a
// user the endpoint serves, and the agent names nobody's UID and the app's path, which the
// kernel reported. Needs root (to run a process as another user); CI runs it as root.
func TestOtherUsersProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test as root: it runs the app as another user")
		}
		t.Skip("needs root to run a process as another user")
	}
	exe, dir := installApp(t)
	start := func(opts ...Option) (*fakeIssuer, string) {
		iss := &fakeIssuer{}
		path := filepath.Join(dir, fmt.Sprintf("run%d", len(opts)), "agent.sock")
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := New(iss, opts...)
		go s.Serve(t.Context(), ln)
		return iss, path
	}

	iss, path := start(WithAllowedExecutables(exe), WithAllowedUsers("0"), WithSignedInCheck(nil))
	r := appAs(t, exe, path, nobody)
	if r.Error == nil || r.Error.Code != localproto.CodeUserNotAllowed || r.Token != "" {
		t.Fatalf("another user's process got %+v %+v", r, r.Error)
	}
	if len(iss.calls()) != 0 {
		t.Fatal("the server was asked for another user's process")
	}

	iss, path = start(WithAllowedExecutables(exe), WithAllowedUsers("65534"), WithSignedInCheck(nil), WithLogger(slog.New(slog.DiscardHandler)))
	r = appAs(t, exe, path, nobody)
	if r.Error != nil || r.Token == "" {
		t.Fatalf("nobody's allowed app: %+v", r.Error)
	}
	calls := iss.calls()
	if len(calls) != 1 || calls[0].Peer.UID != "65534" || calls[0].Peer.Executable != exe || calls[0].Peer.PID <= 1 {
		t.Fatalf("issuer asked %+v", calls)
	}

	// The same user, another executable: a second copy of the app at a path not on the list.
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "not-the-chat-app")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := appAs(t, other, path, nobody); r.Error == nil || r.Error.Code != localproto.CodeAppNotAllowed {
		t.Fatalf("an unlisted executable got %+v %+v", r, r.Error)
	}
	if len(iss.calls()) != 1 {
		t.Fatal("the server was asked for an unlisted executable")
	}
}

// An allowed app started so that it may run other code than its own (a preloaded library,
// Electron as a plain Node interpreter, a debugger port) gets no token; started plainly, it
// does. Runs as the current user: no root needed.
func TestInjectedAppRefused(t *testing.T) {
	exe, dir := installApp(t)
	iss := &fakeIssuer{}
	path := filepath.Join(dir, "run", "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(iss, WithAllowedExecutables(exe), WithAllowedUsers(strconv.Itoa(os.Getuid())), WithSignedInCheck(nil))
	go s.Serve(t.Context(), ln)

	if r := appRun(t, exe, path, nil, nil); r.Error != nil || r.Token == "" {
		t.Fatalf("the plain app: %+v", r.Error)
	}
	for name, c := range map[string]struct {
		env  []string
		args []string
		want string
	}{
		"LD_PRELOAD":           {env: []string{"LD_PRELOAD=/nonexistent/hook.so"}, want: "LD_PRELOAD"},
		"ELECTRON_RUN_AS_NODE": {env: []string{"ELECTRON_RUN_AS_NODE=1"}, want: "ELECTRON_RUN_AS_NODE"},
		"NODE_OPTIONS":         {env: []string{"NODE_OPTIONS=--require /tmp/evil.js"}, want: "NODE_OPTIONS"},
		"--inspect":            {args: []string{"--inspect=9229"}, want: "--inspect"},
	} {
		t.Run(name, func(t *testing.T) {
			r := appRun(t, exe, path, nil, c.env, c.args...)
			if r.Error == nil || r.Error.Code != localproto.CodeAppNotAllowed || !strings.Contains(r.Error.Detail, c.want) {
				t.Fatalf("got %+v %+v", r, r.Error)
			}
		})
	}
	if n := len(iss.calls()); n != 1 {
		t.Fatalf("the server was asked %d times, want once (the plain app)", n)
	}
}
