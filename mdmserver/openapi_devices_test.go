package mdmserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver/openapi"
)

// The device side of the API through checked clients: the other tests' agents and Apple
// devices bring clients of their own, so here an agent walks its whole API, and an Apple device
// enrolls over SCEP and checks in, with every exchange held to the OpenAPI document. The
// document itself is served without a token.
func TestOpenAPIDeviceProtocols(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	it := env.token("it")
	policy, err := os.ReadFile("../examples/policies/hipaa-texting.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if code := env.call("PUT", "/api/v1/policies/hipaa", it, policy, nil); code != http.StatusOK {
		t.Fatalf("apply the policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"hipaa"}`), nil); code != http.StatusOK {
		t.Fatalf("assign the policy: %d", code)
	}

	t.Run("agent", func(t *testing.T) {
		id, agent := env.enrolledAgent()
		agent.Transport = apitest.Checked(t, agent.Transport)
		get := func(path, etag string) *http.Response {
			req, _ := http.NewRequest("GET", env.URL+path, nil)
			if etag != "" {
				req.Header.Set("If-None-Match", etag)
			}
			resp, err := agent.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		resp := get("/agent/v1/policy", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
			t.Fatalf("policy: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
		}
		if again := get("/agent/v1/policy", resp.Header.Get("ETag")); again.StatusCode != http.StatusNotModified {
			t.Fatalf("policy with its ETag: %d", again.StatusCode)
		}
		var nonce struct{ Nonce string }
		apitest.Must(t, agent, "GET", env.URL+"/agent/v1/nonce", "", nil, http.StatusOK, &nonce)
		apitest.Must(t, agent, "POST", env.URL+"/agent/v1/report", "", everyClaim(nonce.Nonce), http.StatusOK, nil)
		env.call("GET", "/api/v1/devices/"+id.DeviceID, env.Admin, nil, nil)
		env.call("GET", "/api/v1/devices/"+id.DeviceID+"/access", env.Admin, nil, nil)
		apitest.Do(t, agent, "POST", env.URL+"/access/v1/token", "", nil, nil) // allowed or denied, both documented
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		apitest.Must(t, agent, "POST", env.URL+"/agent/v1/renew", "", map[string]string{"csr": newCSR(t, key)}, http.StatusOK, nil)
		apitest.Must(t, agent, "GET", env.URL+"/agent/v1/commands?wait=0s", "", nil, http.StatusOK, nil)
	})

	t.Run("apple", func(t *testing.T) {
		e := env.createEnrollment("apple")
		resp, profile := env.get(env.URL + strings.TrimPrefix(e.ProfileURL, env.PublicURL))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("profile: %d %s", resp.StatusCode, profile)
		}
		client := &http.Client{Timeout: 30 * time.Second, Transport: apitest.Checked(t, &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: env.RootCAs()}})}
		ctx := context.Background()
		dev, err := applesim.EnrollFromProfile(ctx, client, profile, applesim.WithLogger(servertest.Logger()))
		if err != nil {
			t.Fatalf("SCEP enrollment: %v", err)
		}
		if err := dev.Enroll(ctx); err != nil {
			t.Fatalf("check-in: %v", err)
		}
		// Answer the posture queries Hale queued at enrollment, then ask for a result.
		for range 3 {
			if _, err := dev.Poll(ctx); err != nil {
				t.Fatal(err)
			}
		}
		env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, nil)
		env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin, nil, nil)
	})

	t.Run("document", func(t *testing.T) {
		for _, tok := range []string{"", env.Admin, it} {
			var raw json.RawMessage
			if code := env.call("GET", openapi.Path, tok, nil, &raw); code != http.StatusOK || !bytes.Equal(bytes.TrimSpace(raw), openapi.JSON()) {
				t.Errorf("GET %s with token %q: %d, %d bytes; want 200 and the document", openapi.Path, tok, code, len(raw))
			}
		}
	})
}

// everyClaim is an agent report carrying every kind of posture claim, so the report's schema
// and the posture the server answers with later are both checked whole.
func everyClaim(nonce string) map[string]any {
	now := time.Now().UTC()
	claim := func(v any) map[string]any { return map[string]any{"value": v, "source": "agent", "observed_at": now} }
	return map[string]any{
		"nonce": nonce, "sequence": 1, "collected_at": now,
		"errors": []map[string]string{{"collector": "firewall", "error": "nft: permission denied"}},
		"posture": map[string]any{
			"platform": "linux", "reported_at": now,
			"os":             claim(map[string]string{"version": "24.04", "build": "noble", "distribution": "ubuntu", "kernel": "6.8.0-45-generic"}),
			"disk_encrypted": claim(true), "swap_encrypted": claim(true),
			"passcode_present": claim(true), "passcode_compliant": claim(true),
			"password_rules":      claim(map[string]any{"enforced": true, "min_length": 12, "min_classes": 3, "min_digits": 1, "min_letters": 1, "min_other": 1}),
			"screen_lock_enabled": claim(true), "screen_lock_timeout": claim("5m0s"),
			"jailbroken": claim(false), "secure_boot": claim(true), "agent_tampered": claim(false),
			"firewall_enabled": claim(true), "kernel_lockdown": claim("integrity"), "kernel_tainted": claim(false),
			"pending_security_updates": claim(0), "reboot_required": claim(false),
		},
	}
}
