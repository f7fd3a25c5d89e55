// Package rsyslogtest runs a real rsyslogd (Debian's rsyslog and rsyslog-gnutls packages) as a
// syslog-over-TLS receiver on a free loopback port, for tests of what Hale sends a SIEM. Where
// rsyslogd is not installed the test is skipped, except under CI (CI set), where it fails:
// .ci/run installs it.
package rsyslogtest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testpki"
)

// Binary is where Debian installs rsyslogd.
const Binary = "/usr/sbin/rsyslogd"

// Receiver is a running rsyslogd writing every message it receives, raw, one per line, to Out.
type Receiver struct {
	t    testing.TB
	dir  string
	Addr string         // 127.0.0.1:port, TLS
	CA   *x509.CertPool // trusts the receiver's certificate
	Out  string         // the file messages are written to
	cmd  *exec.Cmd
}

// Start starts a receiver, stopped when the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("rsyslogd is required under CI (.ci/run installs rsyslog and rsyslog-gnutls): %v", err)
		}
		t.Skipf("rsyslogd not installed (apt-get install rsyslog rsyslog-gnutls): %v", err)
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "syslog test CA")
	cert, key := ca.Issue(t, "127.0.0.1", testpki.ServerFor("127.0.0.1", "localhost"))
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.pem":   ca.PEM,
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{t: t, dir: dir, Addr: ln.Addr().String(), CA: ca.Pool(), Out: filepath.Join(dir, "received.log")}
	ln.Close()
	_, port, _ := net.SplitHostPort(r.Addr)
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`global(workDirectory="%[1]s/work" maxMessageSize="256k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="%[1]s/ca.pem"
  defaultNetstreamDriverCertFile="%[1]s/cert.pem"
  defaultNetstreamDriverKeyFile="%[1]s/key.pem")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="%[2]s")
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file="%[3]s" template="raw" flushOnTXEnd="on" asyncWriting="off")
`, dir, port, r.Out)
	if err := os.WriteFile(filepath.Join(dir, "rsyslog.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts rsyslogd (again, after Stop) and waits until it accepts connections.
func (r *Receiver) Start() {
	r.t.Helper()
	r.cmd = exec.Command(Binary, "-n", "-f", filepath.Join(r.dir, "rsyslog.conf"), "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	// rsyslogd complains about the readiness probe below (a TCP connection that never speaks
	// TLS); its messages go to a file beside its output, or to stderr under -v.
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if !testing.Verbose() {
		f, err := os.OpenFile(filepath.Join(r.dir, "rsyslogd.stderr"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			r.t.Fatal(err)
		}
		defer f.Close()
		r.cmd.Stdout, r.cmd.Stderr = f, f
	}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on %s: %v", r.Addr, err)
		}
	}
}

// Stop stops rsyslogd; what it received stays in Out.
func (r *Receiver) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// Lines returns the messages received so far, one per element.
func (r *Receiver) Lines() []string {
	b, err := os.ReadFile(r.Out)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
