package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/testpki"
)

// TestExampleBackendSessionsAndRevocation is the access issue's acceptance story, with the
// example messaging backend running as a process: a compliant device opens sessions by ID, by
// certificate and by posture token; it is wiped; the backend receives the SET;
// then the check denies and the old token is refused because of the event.
func TestExampleBackendSessionsAndRevocation(t *testing.T) {
	// The backend serves HTTPS with a certificate from a private CA the server trusts for pushes,
	// on loopback, which the server reaches only because it is allow-listed.
	site := newBackendSite(t, t.TempDir())
	srv := startServer(t, site.allow)
	it, security, accessTok := srv.token("it"), srv.token("security"), srv.token("access")

	// A compliant agent device, enrolled and reporting through the agent API.
	srv.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 24h\n", 200, nil)
	srv.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	device, deviceID := enrollDevice(t, srv, it)
	hale := srv.mtls(device)
	reportEncrypted(t, srv, hale)

	// The example backend, trusting Hale's root and receiving its events on a stream it creates
	// with its own access token.
	backend, streamID := site.start(t, srv, accessTok, "--trust-device-id")
	// The device's connection to the backend presents its Hale certificate.
	toBackend := site.client(device)
	session := func(header, value string) (int, string) {
		req, _ := http.NewRequest("POST", "https://"+site.addr+"/sessions", nil)
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := toBackend.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 10*time.Second, "the backend to listen", func() bool { code, _ := session("", ""); return code != 0 })

	var tok struct{ Token string }
	if code := apitest.Do(t, hale, "POST", srv.url+"/access/v1/token", "", nil, &tok); code != 200 {
		t.Fatalf("posture token: %d", code)
	}
	for name, h := range map[string][2]string{
		"by device id":   {"X-Device-ID", deviceID},
		"by certificate": {"", ""},
		"by token":       {"X-Posture-Token", tok.Token},
	} {
		if code, body := session(h[0], h[1]); code != 200 || !strings.Contains(body, deviceID) {
			t.Fatalf("session %s: %d %s\n%s", name, code, body, backend.output())
		}
	}

	// The wipe is accepted; the backend hears of it. How fast (the one-second goal) is measured
	// by bench/revocation, not asserted here.
	wiped := time.Now()
	srv.mustCall("POST", "/api/v1/devices/"+deviceID+"/wipe", security, `{"reason":"reported stolen","mode":"selective"}`, 202, nil)
	waitFor(t, 10*time.Second, "the session-revoked event at the backend", func() bool {
		return strings.Contains(backend.output(), "session-revoked")
	})
	t.Logf("wipe accepted -> SET received and applied by the backend: %s", time.Since(wiped))

	for name, h := range map[string][2]string{
		"by device id":     {"X-Device-ID", deviceID},
		"by certificate":   {"", ""},
		"by the old token": {"X-Posture-Token", tok.Token},
	} {
		code, body := session(h[0], h[1])
		if code != http.StatusForbidden {
			t.Errorf("session %s after the wipe: %d %s", name, code, body)
		}
		if name == "by the old token" && !strings.Contains(body, "token_revoked") {
			t.Errorf("old token refused for another reason than the event: %s", body)
		}
	}
	// The backend logs the event before it answers the push; the outbox empties once the
	// transmitter has that answer.
	var st struct{ Pending int }
	waitFor(t, 10*time.Second, "the outbox to empty after delivery", func() bool {
		srv.mustCall("GET", "/ssf/v1/stream?stream_id="+streamID, srv.admin, "", 200, &st)
		return st.Pending == 0
	})
}

// enrollDevice enrolls an agent identity through the API, with a key made here.
func enrollDevice(t *testing.T, srv *server, it string) (tls.Certificate, string) {
	t.Helper()
	var e struct{ Token string }
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"owner":"nurse.joy","group":"ward7","platform":"agent","ttl":"1h"}`, 201, &e)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"token": e.Token,
		"csr":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		"facts": map[string]string{"hostname": "ward-7-laptop", "os": "linux", "os_version": "24.04"}})
	var id struct {
		DeviceID         string `json:"device_id"`
		CertificateChain string `json:"certificate_chain"`
	}
	srv.mustCall("POST", "/agent/v1/enroll", "", string(body), 201, &id)
	var cert tls.Certificate
	for rest := []byte(id.CertificateChain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	cert.PrivateKey = key
	return cert, id.DeviceID
}

// writeServerCert issues a TLS server certificate for host and writes it and its key as PEM.
func writeServerCert(t *testing.T, ca *testpki.CA, dir, host string) (certFile, keyFile string) {
	t.Helper()
	cert, key := ca.Issue(t, host, testpki.ServerFor(host))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "backend.pem"), filepath.Join(dir, "backend.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

// mtls is a client of the server presenting a device certificate.
func (s *server) mtls(cert tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.srv.RootCAs(), Certificates: []tls.Certificate{cert}}}}
}

// get fetches a public path and fails the test unless it answers 200.
func (s *server) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := s.client.Get(s.url + path)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", path, resp, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// reportEncrypted sends one posture report with an encrypted root and swap, as an agent would.
func reportEncrypted(t *testing.T, srv *server, hale *http.Client) {
	t.Helper()
	var nonce struct{ Nonce string }
	if code := apitest.Do(t, hale, "GET", srv.url+"/agent/v1/nonce", "", nil, &nonce); code != 200 {
		t.Fatalf("nonce: %d", code)
	}
	now := time.Now().UTC()
	claim := map[string]any{"value": true, "source": "agent", "observed_at": now}
	report := map[string]any{"nonce": nonce.Nonce, "sequence": 1, "collected_at": now, "posture": map[string]any{
		"platform": "linux", "reported_at": now, "disk_encrypted": claim, "swap_encrypted": claim}}
	if code := apitest.Do(t, hale, "POST", srv.url+"/agent/v1/report", "", report, nil); code != 200 {
		t.Fatalf("report: %d", code)
	}
}
