package mdmserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/commands"
)

func TestSecurityInfoEndToEnd(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()

	var rec commands.Record
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin,
		[]byte(`{"request_type":"SecurityInfo"}`), &rec); code != http.StatusAccepted {
		t.Fatalf("enqueue SecurityInfo: %d", code)
	}
	// The device may answer before the push call returns: any state but queued is fine.
	if rec.State == commands.StateQueued || rec.PushError != "" || rec.PushedAt.IsZero() {
		t.Fatalf("command not pushed: %+v", rec)
	}
	got := env.waitCommand(dev.UDID(), rec.UUID)
	if got.State != commands.StateAcknowledged || got.Result == nil || got.Result.SecurityInfo == nil {
		t.Fatalf("no parsed SecurityInfo: %+v result=%+v", got.Record, got.Result)
	}
	si := got.Result.SecurityInfo
	if si.PasscodePresent == nil || *si.PasscodePresent != dev.State().PasscodePresent {
		t.Errorf("PasscodePresent = %v, device has %v", si.PasscodePresent, dev.State().PasscodePresent)
	}
	if got.Result.RequestType != "SecurityInfo" {
		t.Errorf("result request type %q", got.Result.RequestType)
	}
	if pushes := env.APNs.PushesFor(dev.PushToken()); len(pushes) == 0 || pushes[0].Topic != testTopic {
		t.Errorf("fake APNs pushes: %+v", pushes)
	}

	// DeviceInformation and ProfileList parse too; the list names what the device holds.
	dev.Update(func(s *applesim.State) {
		s.Profiles = append(s.Profiles, applesim.Profile{Identifier: "org.example.wifi", UUID: "5B3A8D2E-7C41-4F7A-9E0B-2D6C1A9F4E11"})
	})
	for _, rt := range []string{"DeviceInformation", "ProfileList"} {
		env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin, []byte(`{"request_type":"`+rt+`"}`), &rec)
		res := env.waitCommand(dev.UDID(), rec.UUID).Result
		if res == nil || res.RequestType != rt || res.Status != "Acknowledged" {
			t.Fatalf("%s: result %+v", rt, res)
		}
		switch rt {
		case "DeviceInformation":
			if res.DeviceInformation == nil || res.DeviceInformation.OSVersion != dev.State().OSVersion {
				t.Errorf("DeviceInformation = %+v", res.DeviceInformation)
			}
		case "ProfileList":
			var got, want []string
			for _, p := range res.ProfileList {
				got = append(got, p.Identifier)
			}
			for _, p := range dev.State().Profiles {
				want = append(want, p.Identifier)
			}
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("ProfileList identifiers = %v, the device holds %v", got, want)
			}
		}
	}
}

// A command for a device that cannot take it now is NotNow, then acknowledged when it can.
func TestNotNowThenAcknowledged(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()
	dev.SetNotNow(true)
	var rec commands.Record
	// SecurityInfo needs the device unlocked; a busy device answers NotNow.
	env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin, []byte(`{"request_type":"SecurityInfo"}`), &rec)
	deadline := time.Now().Add(10 * time.Second)
	for rec.State != commands.StateNotNow && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands/"+rec.UUID, env.Admin, nil, &rec)
	}
	if rec.State != commands.StateNotNow {
		t.Fatalf("state %s, want not_now", rec.State)
	}
	dev.SetNotNow(false)
	if _, err := dev.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := env.waitCommand(dev.UDID(), rec.UUID); got.State != commands.StateAcknowledged {
		t.Fatalf("after NotNow: %s", got.State)
	}
}

func TestOpsEndpoints(t *testing.T) {
	env := newTestEnv(t)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/nope": 404} {
		if code := env.call("GET", path, "", nil, nil); code != want {
			t.Errorf("GET %s = %d, want %d", path, code, want)
		}
	}
	resp, err := env.Client.Get(env.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte(`hale_http_requests_total{code="200",method="GET",route="GET /healthz"}`)) {
		t.Errorf("metrics lack per-route request counts:\n%s", b)
	}
	fi, err := os.Stat(env.AdminTokenPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, %v", fi.Mode().Perm(), err)
	}
}

// Hostile input on /mdm and the admin API changes nothing and gets a clear error.
func TestBadInput(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()
	stranger, key := testpki.NewCA(t, "foreign CA").Issue(t, "intruder")

	post := func(client *http.Client, body []byte, header map[string]string) int {
		req, _ := http.NewRequest("PUT", env.URL+"/mdm", bytes.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	checkin := map[string]string{"Content-Type": "application/x-apple-aspen-mdm-checkin"}
	cases := []struct {
		name   string
		body   []byte
		header map[string]string
	}{
		{"no certificate", []byte(`<plist><dict/></plist>`), checkin},
		{"garbage signature", []byte(`<plist><dict/></plist>`), map[string]string{"Mdm-Signature": "bm90IGEgc2lnbmF0dXJl"}},
		{"oversized body", bytes.Repeat([]byte("A"), maxMDMBody+10), checkin},
	}
	for _, c := range cases {
		if code := post(env.Client, c.body, c.header); code < 400 {
			t.Errorf("%s: status %d, want an error", c.name, code)
		}
	}
	// A TLS client certificate from a foreign CA fails the handshake. GetClientCertificate
	// sends it even though the server does not list its CA as acceptable.
	foreignCert := &tls.Certificate{Certificate: [][]byte{stranger.Raw}, PrivateKey: key}
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.RootCAs(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return foreignCert, nil }}}}
	if _, err := foreign.Post(env.URL+"/mdm", "application/x-apple-aspen-mdm-checkin", strings.NewReader("x")); err == nil {
		t.Error("foreign client certificate accepted in the TLS handshake")
	}

	// A trusted identity (the device CA issued it) that sends a malformed plist, or that never
	// enrolled and checks in for an unknown enrollment, is refused.
	trusted, tkey := env.DeviceCA.Issue(t, "never enrolled")
	trustedClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.RootCAs(),
		Certificates: []tls.Certificate{{Certificate: [][]byte{trusted.Raw}, PrivateKey: tkey}}}}}
	idle := `<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>Status</key><string>Idle</string>` +
		`<key>UDID</key><string>0000-UNKNOWN-ENROLLMENT</string></dict></plist>`
	for name, body := range map[string]string{"malformed plist": "<plist><dict><key>Status", "unknown enrollment": idle} {
		if code := post(trustedClient, []byte(body), nil); code < 400 {
			t.Errorf("%s from a trusted identity: status %d", name, code)
		}
	}
	if code := post(trustedClient, []byte(`<plist><dict><key>MessageType</key><string>Authenticate</string></dict></plist>`), checkin); code < 400 {
		t.Errorf("Authenticate without a UDID: status %d", code)
	}

	admin := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/v1/devices/" + dev.UDID() + "/commands", `{"request_type":"EraseDevice"}`, 400},
		{"POST", "/api/v1/devices/" + dev.UDID() + "/commands", `{"request_type":`, 400},
		{"POST", "/api/v1/devices/" + dev.UDID() + "/commands", `{"request_type":"SecurityInfo","x":1}`, 400},
		{"POST", "/api/v1/devices/unknown-udid/commands", `{"request_type":"SecurityInfo"}`, 404},
		{"POST", "/api/v1/devices/d_0123456789abcdef/commands", `{"request_type":"SecurityInfo"}`, 404},
		{"GET", "/api/v1/devices/" + dev.UDID() + "/commands/nope", ``, 404},
		{"PUT", "/api/v1/pushcert", `not pem`, 400},
		{"PUT", "/api/v1/pushcert", strings.Repeat("x", 70<<10), 413},
		{"POST", "/api/v1/devices/" + dev.UDID() + "/commands", `{"request_type":"SecurityInfo"}` + strings.Repeat(" ", 2<<20), 413},
	}
	for _, c := range admin {
		if code := env.call(c.method, c.path, env.Admin, []byte(c.body), nil); code != c.want {
			t.Errorf("%s %s %.40q: %d, want %d", c.method, c.path, c.body, code, c.want)
		}
	}
	var list struct{ Commands []commands.Record }
	env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin, nil, &list)
	for _, c := range list.Commands {
		if c.RequestedBy != "system:enrollment" {
			t.Errorf("a bad request created a command: %+v", c)
		}
	}
}

// Restarting on the same data directory keeps the admin token, the TLS identity and the data,
// and a second server cannot open a data directory in use.
func TestRestartKeepsState(t *testing.T) {
	quiet := mdmserver.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := mdmserver.Defaults()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	s1, err := mdmserver.New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(s1.AdminTokenPath())
	cert1 := s1.CAForTest().Root().Raw
	if _, err := mdmserver.New(cfg, quiet); err == nil {
		t.Fatal("a second server opened the data directory while the first holds it")
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := mdmserver.New(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	tok2, _ := os.ReadFile(s2.AdminTokenPath())
	if !bytes.Equal(tok, tok2) {
		t.Error("bootstrap token rewritten on restart")
	}
	if _, err := s2.TokensForTest().Authenticate(context.Background(), strings.TrimSpace(string(tok))); err != nil {
		t.Errorf("bootstrap token not valid after restart: %v", err)
	}
	if !bytes.Equal(cert1, s2.CAForTest().Root().Raw) {
		t.Error("CA root changed across restart")
	}
}
