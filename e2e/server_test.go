package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// healthy reports whether an HTTPS server answers /healthz at addr (certificate not checked:
// this only finds which address the server chose).
func healthy(addr string) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// The mdmserver binary takes its configuration from flags, then HALE_* variables, then the
// --config file, and on SIGTERM finishes, closes its store and exits 0.
func TestServerBinaryConfigAndGracefulShutdown(t *testing.T) {
	bin := buildBinary(t, "mdmserver")
	dir := t.TempDir()
	fileAddr, envAddr, flagAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	fileData, envData := filepath.Join(dir, "from-file"), filepath.Join(dir, "from-env")
	config := filepath.Join(dir, "hale.yaml")
	os.WriteFile(config, []byte("listen: "+fileAddr+"\ndata: "+fileData+"\nlog_level: debug\n"), 0o600)

	start := func(env []string, args ...string) *process {
		p := &process{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd.Env = append(os.Environ(), env...)
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() { p.cmd.Process.Kill() })
		return p
	}
	stop := func(p *process) {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.wait(30 * time.Second); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.output())
		}
		if !strings.Contains(p.output(), "stopped cleanly") {
			t.Fatalf("no clean stop in the log:\n%s", p.output())
		}
	}
	waitHealthy := func(p *process, addr string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !healthy(addr) {
			if time.Now().After(deadline) {
				t.Fatalf("server not serving on %s:\n%s", addr, p.output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// File only.
	p := start(nil, "--config", config)
	waitHealthy(p, fileAddr)
	stop(p)
	if fi, err := os.Stat(filepath.Join(fileData, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token in the file's data dir: %v", err)
	}

	// The environment beats the file.
	p = start([]string{"HALE_LISTEN=" + envAddr, "HALE_DATA=" + envData}, "--config", config)
	waitHealthy(p, envAddr)
	stop(p)
	if _, err := os.Stat(filepath.Join(envData, "hale.db")); err != nil {
		t.Fatalf("HALE_DATA ignored: %v", err)
	}

	// Flags beat both; `serve` is the default command and accepts the same flags.
	p = start([]string{"HALE_LISTEN=" + envAddr}, "serve", "--config", config, "--listen", flagAddr)
	waitHealthy(p, flagAddr)
	if healthy(envAddr) {
		t.Fatal("the environment's address is served although a flag overrides it")
	}
	stop(p)

	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) == 0 {
		t.Fatalf("version: %v %q", err, out)
	}
}
