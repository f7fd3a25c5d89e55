package mdmserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

type enrollmentAnswer struct {
	ID         string `json:"id"`
	Token      string `json:"token"`
	ProfileURL string `json:"profile_url"`
	State      string `json:"state"`
}

func (env *testEnv) createEnrollment(platform string) enrollmentAnswer {
	env.t.Helper()
	var e enrollmentAnswer
	body := `{"owner":"dr.grey@example.org","group":"icu","platform":"` + platform + `","ttl":"1h"}`
	if code := env.call("POST", "/api/v1/enrollments", env.Admin, []byte(body), &e); code != http.StatusCreated || e.Token == "" {
		env.t.Fatalf("create %s enrollment: %d %+v", platform, code, e)
	}
	return e
}

func (env *testEnv) get(url string) (*http.Response, []byte) {
	env.t.Helper()
	resp, err := env.Client.Get(url)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// openssl runs openssl with args, failing the test with its output on error.
func openssl(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An Apple device installs the enrollment profile, gets its identity over SCEP with the
// profile's one-time challenge, checks in to /mdm with it and appears in the inventory with the
// enrollment's owner; Hale queues its posture queries at once.
func TestAppleEnrollmentOverSCEP(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	e := env.createEnrollment("apple")
	if !strings.HasPrefix(e.ProfileURL, env.PublicURL+"/enroll/apple/") {
		t.Fatalf("profile_url %q", e.ProfileURL)
	}
	profileURL := env.URL + strings.TrimPrefix(e.ProfileURL, env.PublicURL)
	resp, profile := env.get(profileURL)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("profile: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), profile)
	}

	// openssl verifies the profile's CMS signature against /ca/root.pem.
	dir := t.TempDir()
	_, rootPEM := env.get(env.URL + "/ca/root.pem")
	os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "profile.mobileconfig"), profile, 0o600)
	openssl(t, "smime", "-verify", "-inform", "DER", "-in", filepath.Join(dir, "profile.mobileconfig"),
		"-CAfile", filepath.Join(dir, "root.pem"), "-purpose", "any", "-out", filepath.Join(dir, "content.plist"))

	client := env.DeviceClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev, err := applesim.EnrollFromProfile(ctx, client, profile, applesim.WithLogger(servertest.Logger()))
	if err != nil {
		t.Fatalf("SCEP enrollment: %v", err)
	}
	openssl(t, "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "root.pem"),
		"-untrusted", writePEM(t, filepath.Join(dir, "inter.pem"), env.CAForTest().Intermediate()),
		writePEM(t, filepath.Join(dir, "device.pem"), dev.Certificate()))
	if err := dev.Enroll(ctx); err != nil {
		t.Fatalf("MDM enrollment with the SCEP identity: %v", err)
	}
	go dev.RunPushLoop(ctx, env.APNs)

	var list struct{ Devices []inventory.Device }
	env.call("GET", "/api/v1/devices?owner=dr.grey@example.org", env.Admin, nil, &list)
	if len(list.Devices) != 1 {
		t.Fatalf("inventory: %+v", list.Devices)
	}
	d := list.Devices[0]
	if d.ID != dev.Certificate().Subject.CommonName || d.Group != "icu" || d.EnrollmentID != dev.UDID() ||
		d.Platform != inventory.PlatformApple || d.State != inventory.StateActive || len(d.CertSerials) != 1 {
		t.Fatalf("device record %+v", d)
	}
	// DeviceInformation, SecurityInfo, ProfileList and Restrictions were queued at enrollment and
	// answered.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var cmds struct{ Commands []commands.Record }
		env.call("GET", "/api/v1/devices/"+d.ID+"/commands", env.Admin, nil, &cmds)
		done := 0
		for _, c := range cmds.Commands {
			if c.State == commands.StateAcknowledged && c.RequestedBy == "system:enrollment" {
				done++
			}
		}
		if done == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posture queries not answered: %+v", cmds.Commands)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The token was used: the profile cannot be fetched again.
	if resp, _ := env.get(profileURL); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("second profile fetch: %d", resp.StatusCode)
	}
	var enrollments struct{ Enrollments []enrollmentAnswer }
	env.call("GET", "/api/v1/enrollments", env.Admin, nil, &enrollments)
	if len(enrollments.Enrollments) != 1 || enrollments.Enrollments[0].State != "used" {
		t.Errorf("enrollment list %+v", enrollments.Enrollments)
	}
}

// newCSR returns a PEM CSR for key with an empty subject: the agent does not know its device ID
// before enrolling, and the CA names the certificate itself.
func newCSR(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

type agentIdentity struct {
	DeviceID         string `json:"device_id"`
	CertificateChain string `json:"certificate_chain"`
	CACertificate    string `json:"ca_certificate"`
	key              *ecdsa.PrivateKey
}

func (env *testEnv) agentEnroll(token string, key *ecdsa.PrivateKey, csr string) (int, agentIdentity) {
	env.t.Helper()
	body, _ := json.Marshal(map[string]any{"token": token, "csr": csr,
		"facts": map[string]string{"hostname": "ward-7-laptop", "os": "linux", "os_version": "24.04"}})
	var id agentIdentity
	code := env.call("POST", "/agent/v1/enroll", "", body, &id)
	id.key = key
	return code, id
}

// mtlsClient is an HTTP client presenting the agent's certificate.
func (env *testEnv) mtlsClient(id agentIdentity) *http.Client {
	env.t.Helper()
	var chain [][]byte
	for rest := []byte(id.CertificateChain); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		chain = append(chain, b.Bytes)
	}
	cert := tls.Certificate{Certificate: chain, PrivateKey: id.key}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: env.RootCAs(), Certificates: []tls.Certificate{cert}}}}
}

func TestAgentEnrollmentAndMTLS(t *testing.T) {
	env := newTestEnv(t)
	e := env.createEnrollment("agent")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	// A weak key is refused and does not use up the token.
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	if code, _ := env.agentEnroll(e.Token, key, newCSR(t, weak)); code != http.StatusBadRequest {
		t.Fatalf("RSA-1024 CSR: %d", code)
	}
	// A CSR claiming another identity is refused.
	claimDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "d_0000000000000001"}}, key)
	claim := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: claimDER}))
	if code, _ := env.agentEnroll(e.Token, key, claim); code != http.StatusBadRequest {
		t.Fatalf("CSR claiming another device: %d", code)
	}
	code, id := env.agentEnroll(e.Token, key, newCSR(t, key))
	if code != http.StatusCreated || !inventory.ValidID(id.DeviceID) {
		t.Fatalf("enroll: %d %+v", code, id)
	}
	// One use only, and an Apple token is not an agent token.
	if code, _ := env.agentEnroll(e.Token, key, newCSR(t, key)); code != http.StatusUnauthorized {
		t.Errorf("token reused: %d", code)
	}
	apple := env.createEnrollment("apple")
	if code, _ := env.agentEnroll(apple.Token, key, newCSR(t, key)); code != http.StatusUnauthorized {
		t.Errorf("apple token for an agent: %d", code)
	}

	// The enrollment is on the audit record; the anonymous refusals are too, as their source's
	// summary once its window closes (here: drained), and none with the token.
	env.EnrollGateForTest().AuditAll(time.Now())
	var audited struct {
		Entries []struct {
			Action, Outcome string
			Details         map[string]string
		}
	}
	env.call("GET", "/api/v1/audit?action=enrollment.agent", env.Admin, nil, &audited)
	if len(audited.Entries) != 1 || audited.Entries[0].Outcome != "ok" {
		t.Errorf("audited agent enrollments: %+v", audited.Entries)
	}
	env.call("GET", "/api/v1/audit?action=enrollment.refused", env.Admin, nil, &audited)
	if len(audited.Entries) != 1 || audited.Entries[0].Details["count"] != "4" ||
		audited.Entries[0].Details["reasons"] != "csr_refused=2,used=1,wrong_platform=1" {
		t.Errorf("audited refusals: %+v", audited.Entries)
	}
	req, _ := http.NewRequest("GET", env.URL+"/api/v1/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+env.Admin)
	resp, err := env.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	export, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(export), `"action":"enrollment.agent"`) {
		t.Fatalf("audit export: %d %.200s", resp.StatusCode, export)
	}
	if strings.Contains(string(export), e.Token) {
		t.Error("an enrollment token leaked into the audit log")
	}

	// openssl verifies the issued chain against /ca/root.pem.
	dir := t.TempDir()
	_, rootPEM := env.get(env.URL + "/ca/root.pem")
	os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "chain.pem"), []byte(id.CertificateChain), 0o600)
	openssl(t, "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "root.pem"), "-untrusted", filepath.Join(dir, "chain.pem"), filepath.Join(dir, "chain.pem"))

	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+id.DeviceID, env.Admin, nil, &d)
	if d.Owner != "dr.grey@example.org" || d.Platform != inventory.PlatformAgent || d.Hostname != "ward-7-laptop" || d.OS != "linux" {
		t.Fatalf("device record %+v", d)
	}

	// mTLS with the device certificate works; without one it is refused.
	renew := func(c *http.Client) (int, error) {
		body, _ := json.Marshal(map[string]string{"csr": newCSR(t, key)})
		resp, err := c.Post(env.URL+"/agent/v1/renew", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	agent := env.mtlsClient(id)
	if code, err := renew(agent); code != http.StatusOK {
		t.Fatalf("renew over mTLS: %d %v", code, err)
	}
	if code, _ := renew(env.Client); code != http.StatusUnauthorized {
		t.Errorf("renew without a client certificate: %d", code)
	}

	// Unenrolling revokes: the next handshake with that certificate fails.
	if code := env.call("DELETE", "/api/v1/devices/"+id.DeviceID, env.Admin, nil, &d); code != 200 || d.State != inventory.StateUnenrolled {
		t.Fatalf("unenroll: %d %+v", code, d)
	}
	agent.CloseIdleConnections()
	if code, err := renew(agent); err == nil && code < 400 {
		t.Fatalf("revoked certificate accepted: %d", code)
	}
	var crlResp *http.Response
	crlResp, crl := env.get(env.URL + "/ca/crl")
	parsed, err := x509.ParseRevocationList(crl)
	if err != nil || crlResp.Header.Get("Content-Type") != "application/pkix-crl" || len(parsed.RevokedCertificateEntries) < 2 {
		t.Fatalf("CRL after unenroll: %v %d entries", err, len(parsed.RevokedCertificateEntries))
	}
}

// Guessing tokens is slowed down per source address.
func TestEnrollmentRateLimited(t *testing.T) {
	env := newTestEnv(t)
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		resp, _ := env.get(env.URL + "/enroll/apple/hale_enr_" + strings.Repeat("0", 64))
		limited = resp.StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("40 bad token attempts were never rate-limited")
	}
}

// An anonymous agent enrollment with a valid CSR and a wrong token gets the CA to sign nothing:
// the token is checked before signing, so no certificate is issued and then revoked.
func TestAgentEnrollBadTokenSignsNothing(t *testing.T) {
	env := newTestEnv(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for range 3 {
		if code, _ := env.agentEnroll("not-a-token", key, newCSR(t, key)); code != http.StatusUnauthorized {
			t.Fatalf("enroll with a wrong token: %d", code)
		}
	}
	_, crlDER := env.get(env.URL + "/ca/crl")
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("CRL after refused enrollments: %v %d entries (certificates were signed)", err, len(crl.RevokedCertificateEntries))
	}
}
