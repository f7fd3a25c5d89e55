package agentapi

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

func TestAppKeyThumbprint(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: &k.PublicKey})
	jkt, msg := appKeyThumbprint(pub)
	if want, _ := posture.KeyThumbprint(&k.PublicKey); msg != "" || jkt != want {
		t.Fatalf("thumbprint %q (%s), want %q", jkt, msg, want)
	}
	priv, _ := json.Marshal(jose.JSONWebKey{Key: k})
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := json.Marshal(jose.JSONWebKey{Key: &p384.PublicKey})
	for name, raw := range map[string][]byte{"private": priv, "P-384": other, "empty": nil, "garbage": []byte(`"x"`),
		"symmetric": []byte(`{"kty":"oct","k":"AAAA"}`)} {
		if _, msg := appKeyThumbprint(raw); msg == "" {
			t.Errorf("%s key accepted", name)
		}
	}
}

func TestCheckLocalApp(t *testing.T) {
	ok := api.AgentAppTokenRequest{User: "alice", UID: "1000", Executable: "/opt/chat/chat"}
	if msg := checkLocalApp(ok); msg != "" {
		t.Fatal(msg)
	}
	for _, exe := range []string{`C:\Program Files\Chat\chat.exe`, `\\server\share\chat.exe`, "/Applications/Chat.app/Contents/MacOS/Chat"} {
		if msg := checkLocalApp(api.AgentAppTokenRequest{User: `CORP\alice`, UID: "S-1-5-21-1-2-3-1001", Executable: exe}); msg != "" {
			t.Errorf("%s: %s", exe, msg)
		}
	}
	long := string(bytes.Repeat([]byte("a"), api.MaxExecutableLen))
	for name, r := range map[string]api.AgentAppTokenRequest{
		"no user":        {Executable: "/x"},
		"newline user":   {User: "a\nb", Executable: "/x"},
		"relative":       {User: "a", Executable: "x/y"},
		"drive relative": {User: "a", Executable: `C:chat.exe`},
		"too long":       {User: "a", Executable: "/" + long},
		"invalid utf-8":  {User: "a\xff", Executable: "/x"},
		"escape in uid":  {User: "a", UID: "\x1b[31m", Executable: "/x"},
	} {
		if msg := checkLocalApp(r); msg == "" {
			t.Errorf("%s accepted", name)
		}
	}
}

// FuzzAppTokenRequest: any body is decoded, or refused with a 4xx, and its key and local app
// are accepted or refused without a panic; an accepted key always has a thumbprint.
func FuzzAppTokenRequest(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: &k.PublicKey})
	good, _ := json.Marshal(api.AgentAppTokenRequest{Key: pub, User: "alice", Executable: "/opt/chat/chat"})
	f.Add(good)
	f.Add([]byte(`{"key":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"},"user":"u","executable":"C:\\x"}`))
	f.Add([]byte(`{"key":null,"user":"","executable":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/agent/v1/app-token", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		var req api.AgentAppTokenRequest
		if !problem.DecodeJSON(w, r, maxAppTokenBody, &req) {
			if w.Code < 400 || w.Code >= 500 {
				t.Fatalf("refused body answered %d", w.Code)
			}
			return
		}
		if jkt, msg := appKeyThumbprint(req.Key); msg == "" && len(jkt) != 43 {
			t.Fatalf("accepted key with thumbprint %q", jkt)
		}
		_ = checkLocalApp(req)
	})
}
