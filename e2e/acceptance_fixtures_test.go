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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.yaml.in/yaml/v3"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/fixturetree"
	"github.com/halemdm/hale/internal/testpki"
)

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
