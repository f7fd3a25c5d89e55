package mdmserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/posture"
)

// desktopVerifier verifies tokens as the messaging backend does: offline, against the
// server's published keys and issuer.
func (env *testEnv) desktopVerifier() *posture.Verifier {
	env.t.Helper()
	resp, err := env.Client.Get(env.URL + "/access/v1/jwks.json")
	if err != nil {
		env.t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return posture.NewVerifier(posture.StaticJWKS(jwks), posture.WithIssuer(env.PublicURL))
}

// appKeyJWK is key's public half as a JWK, as the agent forwards it.
func appKeyJWK(t *testing.T, key *ecdsa.PrivateKey) json.RawMessage {
	j, err := localproto.PublicJWK(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	return b
}

const sessionsURL = "https://chat.example/sessions"

// proofBy is a DPoP proof for POST sessionsURL presenting token, signed by key.
func proofBy(t *testing.T, key *ecdsa.PrivateKey, token string) string {
	t.Helper()
	p, err := posture.NewProof(&key.PublicKey, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, key, d) },
		"POST", sessionsURL, token, strconv.FormatInt(time.Now().UnixNano(), 36), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// POST /agent/v1/app-token over the agent's mutual TLS: a token of the app-token shape bound to
// the app's key, naming the device, user and executable; refused without the device
// certificate, for bad input, and for a device that may not open sessions.
func TestAgentAppTokenRoute(t *testing.T) {
	env := newTestEnv(t)
	id, agentClient := env.compliantAgent()
	appKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := api.AgentAppTokenRequest{Key: appKeyJWK(t, appKey), User: "alice", UID: "1000", Executable: "/opt/chat/chat"}
	var tok api.PostureToken
	if code := apitest.Do(t, agentClient, "POST", env.URL+"/agent/v1/app-token", "", req, &tok); code != 200 {
		t.Fatalf("app token: %d", code)
	}
	v := env.desktopVerifier()
	claims, err := v.VerifyWithProof(context.Background(), tok.Token, proofBy(t, appKey, tok.Token), "POST", sessionsURL)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	jkt, _ := posture.KeyThumbprint(&appKey.PublicKey)
	if claims.Subject != id.DeviceID || claims.Confirm.JKT != jkt || claims.Confirm.X5tS256 != "" || claims.LocalApp == nil ||
		*claims.LocalApp != (posture.LocalApp{User: "alice", UID: "1000", Executable: "/opt/chat/chat"}) || !claims.Device.Compliant {
		t.Fatalf("claims %+v (local app %+v)", claims, claims.LocalApp)
	}
	if life := claims.Expiry - claims.IssuedAt; life <= 0 || life > int64(posture.MaxTokenLifetime/time.Second) {
		t.Fatalf("lifetime %ds", life)
	}
	// A copy of the token is worthless without the app's key; a proof is good once.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := v.VerifyWithProof(context.Background(), tok.Token, proofBy(t, other, tok.Token), "POST", sessionsURL); !errors.Is(err, posture.ErrProof) {
		t.Fatalf("proof by another key: %v", err)
	}
	p := proofBy(t, appKey, tok.Token)
	if _, err := v.VerifyWithProof(context.Background(), tok.Token, p, "POST", sessionsURL); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyWithProof(context.Background(), tok.Token, p, "POST", sessionsURL); !errors.Is(err, posture.ErrProof) {
		t.Fatalf("replayed proof: %v", err)
	}
	// The device certificate is the credential: bearer-less, certificate-less callers get nothing.
	if code := apitest.Do(t, env.Client, "POST", env.URL+"/agent/v1/app-token", "", req, nil); code != http.StatusUnauthorized {
		t.Fatalf("without the device certificate: %d", code)
	}
	private, _ := json.Marshal(map[string]string{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "d": "AAAA"})
	for name, bad := range map[string]any{
		"no key":              api.AgentAppTokenRequest{User: "alice", Executable: "/opt/chat/chat"},
		"not a key":           api.AgentAppTokenRequest{Key: json.RawMessage(`{"kty":"EC"}`), User: "alice", Executable: "/opt/chat/chat"},
		"a private key":       api.AgentAppTokenRequest{Key: private, User: "alice", Executable: "/opt/chat/chat"},
		"no user":             api.AgentAppTokenRequest{Key: req.Key, Executable: "/opt/chat/chat"},
		"relative executable": api.AgentAppTokenRequest{Key: req.Key, User: "alice", Executable: "chat"},
		"control characters":  api.AgentAppTokenRequest{Key: req.Key, User: "alice\n", Executable: "/opt/chat/chat"},
		"unknown member":      map[string]any{"key": req.Key, "user": "alice", "executable": "/opt/chat/chat", "device_id": "d_1"},
	} {
		// Invalid bodies are sent raw: the OpenAPI check would refuse some before the server did.
		b, _ := json.Marshal(bad)
		r, _ := http.NewRequest("POST", env.URL+"/agent/v1/app-token", bytes.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		resp, err := agentClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, resp.StatusCode)
		}
	}

	// Out of compliance past its grace (none here): the next token is refused at once.
	noGrace := "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 0s\n"
	if code := env.call("PUT", "/api/v1/policies/agents", env.token("it"), []byte(noGrace), nil); code != 200 {
		t.Fatalf("policy without grace: %d", code)
	}
	env.agentReport(agentClient, false)
	var denied struct {
		Code    string
		Reasons []posture.Reason
	}
	if code := apitest.Do(t, agentClient, "POST", env.URL+"/agent/v1/app-token", "", req, &denied); code != http.StatusForbidden ||
		denied.Code != "access-denied" || len(denied.Reasons) == 0 {
		t.Fatalf("app token for a non-compliant device: %d %+v", code, denied)
	}
	env.agentReport(agentClient, true)
	if code := apitest.Do(t, agentClient, "POST", env.URL+"/agent/v1/app-token", "", req, &tok); code != 200 {
		t.Fatalf("app token once compliant again: %d", code)
	}

	// Locked: the next token is refused at once, with the reason.
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/lock", env.token("security"), []byte(`{"reason":"left on the ward"}`), nil); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	var prob struct {
		Code    string
		Reasons []posture.Reason
	}
	if code := apitest.Do(t, agentClient, "POST", env.URL+"/agent/v1/app-token", "", req, &prob); code != http.StatusForbidden ||
		!slices.ContainsFunc(prob.Reasons, func(r posture.Reason) bool { return r.Code == access.ReasonLocked }) {
		t.Fatalf("app token for a locked device: %d %+v", code, prob)
	}
}
