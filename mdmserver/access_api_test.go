package mdmserver_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// agentPolicy is a policy an agent on Linux can meet by reporting an encrypted disk.
const agentPolicy = `
encryption:
  required: true
reporting:
  max_age: 15m
grace: 1h
`

// compliantAgent enrolls an agent under agentPolicy and has it report an encrypted disk.
func (env *testEnv) compliantAgent() (agentIdentity, *http.Client) {
	env.t.Helper()
	it := env.token("it")
	if code := env.call("PUT", "/api/v1/policies/agents", it, []byte(agentPolicy), nil); code != 200 {
		env.t.Fatalf("put policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"agents"}`), nil); code != 200 {
		env.t.Fatalf("assign: %d", code)
	}
	id, agent := env.enrolledAgent()
	env.agentReport(agent, true)
	return id, agent
}

// agentReport sends one posture report from an agent, encrypted or not.
func (env *testEnv) agentReport(agent *http.Client, encrypted bool) {
	env.t.Helper()
	var nonce struct{ Nonce string }
	if code := apitest.Do(env.t, agent, "GET", env.URL+"/agent/v1/nonce", "", nil, &nonce); code != 200 {
		env.t.Fatalf("nonce: %d", code)
	}
	now := time.Now().UTC()
	report := map[string]any{"nonce": nonce.Nonce, "sequence": now.UnixNano(), "collected_at": now, "posture": &policies.Posture{
		Platform:      policies.PlatformLinux,
		DiskEncrypted: policies.Observe(encrypted, policies.ProvenanceAgent, now),
		SwapEncrypted: policies.Observe(true, policies.ProvenanceAgent, now),
	}}
	if code := apitest.Do(env.t, agent, "POST", env.URL+"/agent/v1/report", "", report, nil); code != 200 {
		env.t.Fatalf("report: %d", code)
	}
}

// check posts a check request and decodes the answer.
func (env *testEnv) check(token string, req any, out any) int {
	env.t.Helper()
	b, _ := json.Marshal(req)
	return env.call("POST", "/access/v1/check", token, b, out)
}

func leafOf(t *testing.T, chainPEM string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(chainPEM))
	if b == nil {
		t.Fatal("no certificate in the chain")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAccessCheck covers POST /access/v1/check: every way to name a device, batches, and the
// subjects it must deny.
func TestAccessCheck(t *testing.T) {
	env := newTestEnv(t)
	id, _ := env.compliantAgent()
	accessTok := env.token("access")
	leaf := leafOf(t, id.CertificateChain)
	fp := strings.ToUpper(inventory.CertFingerprint(leaf))
	colons := fp[:2] + ":" + fp[2:4] + ":" + fp[4:]
	foreign, _ := testpki.NewCA(t, "someone else").Issue(t, id.DeviceID)

	for name, tc := range map[string]struct {
		subj   posture.Subject
		allow  bool
		device string
		code   string
	}{
		"device id":             {posture.Subject{DeviceID: id.DeviceID}, true, id.DeviceID, ""},
		"certificate":           {posture.Subject{Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))}, true, id.DeviceID, ""},
		"fingerprint":           {posture.Subject{CertificateSHA256: colons}, true, id.DeviceID, ""},
		"unknown device":        {posture.Subject{DeviceID: "d_00000000000000ff"}, false, "d_00000000000000ff", access.ReasonUnknownDevice},
		"oversized id":          {posture.Subject{DeviceID: strings.Repeat("d", 200)}, false, "", access.ReasonInvalidDeviceID},
		"foreign certificate":   {posture.Subject{Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.Raw}))}, false, "", access.ReasonUnknownCert},
		"junk certificate":      {posture.Subject{Certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, false, "", access.ReasonUnknownCert},
		"unknown fingerprint":   {posture.Subject{CertificateSHA256: strings.Repeat("ab", 32)}, false, "", access.ReasonUnknownCert},
		"malformed fingerprint": {posture.Subject{CertificateSHA256: "xyz"}, false, "", access.ReasonUnknownCert},
		"forged token":          {posture.Subject{Token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJkIn0."}, false, "", access.ReasonInvalidToken},
		"two names":             {posture.Subject{DeviceID: id.DeviceID, CertificateSHA256: fp}, false, id.DeviceID, access.ReasonInvalidSubject},
	} {
		var d posture.Decision
		if code := env.check(accessTok, tc.subj, &d); code != 200 {
			t.Fatalf("%s: status %d", name, code)
		}
		if d.Allow != tc.allow || d.DeviceID != tc.device || (tc.code != "" && (len(d.Reasons) == 0 || d.Reasons[0].Code != tc.code)) {
			t.Errorf("%s: %+v", name, d)
		}
	}

	// A batch answers in order, one decision per subject.
	var batch posture.CheckResponse
	subjects := []posture.Subject{{DeviceID: id.DeviceID}, {DeviceID: "d_00000000000000ff"}, {CertificateSHA256: fp}}
	if code := env.check(accessTok, posture.CheckRequest{Devices: subjects}, &batch); code != 200 || len(batch.Decisions) != 3 ||
		!batch.Decisions[0].Allow || batch.Decisions[1].Allow || !batch.Decisions[2].Allow {
		t.Fatalf("batch: %d %+v", code, batch)
	}
	tooMany := make([]posture.Subject, posture.MaxCheckBatch+1)
	for i := range tooMany {
		tooMany[i].DeviceID = fmt.Sprintf("d_%016x", i)
	}
	if code := env.check(accessTok, posture.CheckRequest{Devices: tooMany}, nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized batch: %d", code)
	}
	for name, body := range map[string]string{
		"both forms": `{"device_id":"` + id.DeviceID + `","devices":[{"device_id":"x"}]}`,
		"empty":      `{}`,
		"not json":   `{"device_id":`,
		"unknown":    `{"device":"x"}`,
	} {
		if code := env.call("POST", "/access/v1/check", accessTok, []byte(body), nil); code != 400 {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}

	// Locked: denied however it is named.
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/lock", env.token("security"), []byte(`{"reason":"left on the bus"}`), nil); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	var d posture.Decision
	env.check(accessTok, posture.Subject{CertificateSHA256: fp}, &d)
	if d.Allow || d.Reasons[0].Code != access.ReasonLocked {
		t.Errorf("locked device by fingerprint: %+v", d)
	}
}

// TestPostureToken covers POST /access/v1/token and the JWKS: a compliant device gets a token
// bound to its certificate that verifies offline; a denied device gets none.
func TestPostureToken(t *testing.T) {
	env := newTestEnv(t)
	id, agent := env.compliantAgent()
	accessTok := env.token("access")

	var tok struct {
		Token     string    `json:"token"`
		TokenType string    `json:"token_type"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if code := apitest.Do(t, agent, "POST", env.URL+"/access/v1/token", "", nil, &tok); code != 200 || tok.TokenType != posture.TokenType {
		t.Fatalf("token: %d %+v", code, tok)
	}
	if ttl := time.Until(tok.ExpiresAt); ttl < 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("token lifetime %s, want the default 5m", ttl)
	}

	// Offline verification against the published keys, bound to the agent's certificate.
	resp, err := env.Client.Get(env.URL + "/access/v1/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v := posture.NewVerifier(posture.StaticJWKS(jwks), posture.WithIssuer(env.PublicURL))
	leaf := leafOf(t, id.CertificateChain)
	claims, err := v.Verify(context.Background(), tok.Token, leaf)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if claims.Subject != id.DeviceID || !claims.Device.Compliant || claims.Device.Encrypted == nil || !*claims.Device.Encrypted ||
		claims.Device.Platform != "linux" {
		t.Errorf("claims: %+v", claims)
	}
	other, _ := testpki.NewCA(t, "other").Issue(t, "other")
	if _, err := v.Verify(context.Background(), tok.Token, other); !errors.Is(err, posture.ErrWrongBinding) {
		t.Errorf("token presented with another certificate: %v", err)
	}

	// The token names the device to the check endpoint.
	var d posture.Decision
	if env.check(accessTok, posture.Subject{Token: tok.Token}, &d); !d.Allow || d.DeviceID != id.DeviceID {
		t.Errorf("check by token: %+v", d)
	}

	// Noncompliant past grace is not possible within the test; a locked device is denied a token.
	env.agentReport(agent, false)
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/lock", env.token("security"), []byte(`{"reason":"audit"}`), nil); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	var p struct {
		Code    string
		Reasons []posture.Reason
	}
	if code := apitest.Do(t, agent, "POST", env.URL+"/access/v1/token", "", nil, &p); code != http.StatusForbidden || p.Code != "access-denied" ||
		!slices.ContainsFunc(p.Reasons, func(r posture.Reason) bool { return r.Code == access.ReasonLocked }) {
		t.Errorf("token for a locked device: %d %+v", code, p)
	}
	// The old token still verifies offline (it is valid until it expires or an event revokes it),
	// but the live check by token denies.
	if env.check(accessTok, posture.Subject{Token: tok.Token}, &d); d.Allow {
		t.Errorf("check by the token of a locked device: %+v", d)
	}
}
