package mdmserver_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/console"
)

// oidcEnv starts a local OpenID Connect provider and a server whose console signs people in
// through it, group hale-security mapped to security and hale-desk to IT.
func oidcEnv(t *testing.T) (*testEnv, *mockoidc.MockOIDC) {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	secret := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secret, []byte(m.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, func(c *mdmserver.Config) {
		c.ConsoleOIDC = console.OIDCConfig{Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecretFile: secret,
			Roles: map[string]string{"hale-security": "security", "hale-desk": "it"}}
	})
	return env, m
}

func (env *testEnv) publicBrowser() *browser {
	b := env.browser()
	b.base = env.PublicURL
	return b
}

// Signing in through the organisation's provider: the code flow with state, nonce and PKCE
// ends in a session in the role of the person's group, on the record with their e-mail as the
// person; someone in no mapped group is refused, on the record too; a callback this browser did
// not start, or replayed, opens nothing.
func TestConsoleOIDCSignIn(t *testing.T) {
	env, m := oidcEnv(t)
	m.QueueUser(&mockoidc.MockUser{Subject: "u-alice", Email: "alice@example.org", EmailVerified: true,
		Groups: []string{"staff", "hale-desk", "hale-security"}})
	// The provider sends people back to the public URL: the console is used there.
	b := env.publicBrowser()
	code, body := b.get("/console/signin")
	if code != 200 || !strings.Contains(body, `href="/console/oidc/login"`) {
		t.Fatalf("sign-in page without the provider's button: %d", code)
	}
	var callback string
	b.c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/console/oidc/callback" {
			callback = req.URL.String()
		}
		return nil
	}
	if code, body := b.get("/console/oidc/login"); code != 200 || !strings.Contains(body, `http-equiv="refresh"`) || callback == "" {
		t.Fatalf("OIDC sign-in: %d at %s: %s", code, b.last, flash(body))
	}
	if code, body := b.get("/console/approvals"); code != 200 || !strings.Contains(body, `<span class="role">security</span>`) ||
		!strings.Contains(body, "alice@example.org") {
		t.Fatalf("after OIDC sign-in: %d at %s", code, b.last)
	}
	in := env.consoleAudit("console.signin")
	if len(in) != 1 || in[0].Person != "alice@example.org" || in[0].Role != "security" || in[0].Details["via"] != "oidc" ||
		in[0].Details["subject"] != "u-alice" {
		t.Fatalf("OIDC sign-in on the record: %+v", in)
	}

	// The provider's answer replayed, in this browser or another, opens nothing.
	for _, c := range []*browser{b, env.publicBrowser()} {
		req, _ := http.NewRequest("GET", callback, nil)
		if code, _ := c.do(req); code != 400 {
			t.Fatalf("replayed callback: %d, want 400", code)
		}
	}

	// Someone in no mapped group.
	m.QueueUser(&mockoidc.MockUser{Subject: "u-bob", Email: "bob@example.org", EmailVerified: true, Groups: []string{"staff"}})
	other := env.publicBrowser()
	if code, body := other.get("/console/oidc/login"); code != 403 || !strings.Contains(body, "none of your groups") {
		t.Fatalf("unmapped groups: %d", code)
	}
	if code, _ := other.get("/console/devices"); code != 200 || other.last.Path != "/console/signin" {
		t.Fatalf("a refused OIDC sign-in opened a session: %s", other.last)
	}
	if in := env.consoleAudit("console.signin"); len(in) != 2 || in[1].Outcome != "denied" || in[1].Person != "bob@example.org" {
		t.Fatalf("refused OIDC sign-in on the record: %+v", in)
	}
}
