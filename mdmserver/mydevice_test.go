package mdmserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/mdmserver"
)

// pageGet fetches a my-device page in a language, without following redirects.
func (env *testEnv) page(method, u, lang string, form url.Values) (*http.Response, string) {
	env.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept-Language", lang)
	c := *env.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The device's user opens its page from a link the agent asked for with the device's
// certificate: in Spanish it says the device is blocked, what to fix with the Linux steps and
// whom to call; "check again" re-evaluates; emergency access opens from the page with a reason
// and is refused without one. The page has no script and shows nothing of another device; a
// forged or tampered link shows nothing.
func TestMyDevicePage(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.HelpDeskName = "Soporte clínico" })
	it, accessTok := env.token("it"), env.token("access")
	pol := strings.Replace(breakGlassPolicy, "grace: 1h", "grace: 0s", 1)
	if code := env.call("PUT", "/api/v1/policies/bg", it, []byte(pol), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	env.assignDefault(it, "bg")
	id, agent := env.enrolledAgent()
	env.agentReport(agent, false)
	other, otherAgent := env.enrolledAgent()
	env.agentReport(otherAgent, true)

	var link api.MyDeviceLink
	if code := apitest.Do(t, agent, "POST", env.URL+"/agent/v1/my-device-link", "", nil, &link); code != 200 {
		t.Fatalf("link: %d", code)
	}
	u := env.URL + strings.TrimPrefix(link.URL, env.PublicURL)
	resp, html := env.page("GET", u, "es-ES,es;q=0.9", nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") ||
		resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("page: %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{`lang="es"`, "no puede abrir la mensajería clínica", "Active el cifrado del disco",
		"LUKS", "Soporte clínico", "Comprobar de nuevo", "Abrir acceso de emergencia"} {
		if !strings.Contains(html, want) {
			t.Fatalf("page lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(strings.ToLower(html), "<script") || strings.Contains(html, other.DeviceID) || strings.Contains(html, "token") {
		t.Fatalf("page has a script or another device's data:\n%s", html)
	}

	// Check again: back to the page with a notice.
	resp, _ = env.page("POST", u+"/check", "en", url.Values{})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=checked") {
		t.Fatalf("check again: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, html = env.page("GET", env.URL+resp.Header.Get("Location"), "en", nil); !strings.Contains(html, "Checked again") {
		t.Fatalf("no notice:\n%s", html)
	}

	// Emergency access from the page: no reason is refused, nothing changes; with one it opens.
	resp, _ = env.page("POST", u+"/break-glass", "en", url.Values{"reason": {"x"}})
	if !strings.Contains(resp.Header.Get("Location"), "refused%3Abreak-glass-reason-required") || env.access(accessTok, id.DeviceID).Allow {
		t.Fatalf("no reason: %s", resp.Header.Get("Location"))
	}
	resp, _ = env.page("POST", u+"/break-glass", "en", url.Values{"reason": {"rapid response, bed 12"}})
	if !strings.Contains(resp.Header.Get("Location"), "done=break-glass") {
		t.Fatalf("break-glass: %s", resp.Header.Get("Location"))
	}
	if a := env.access(accessTok, id.DeviceID); !a.Allow || a.BreakGlass == nil {
		t.Fatalf("after the page's break-glass: %+v", a)
	}
	if _, html = env.page("GET", u, "en", nil); !strings.Contains(html, "Emergency access is open") {
		t.Fatalf("page after break-glass:\n%s", html)
	}

	// A tampered, truncated or made-up link shows nothing.
	tok := u[strings.LastIndexByte(u, '/')+1:]
	for _, bad := range []string{tok[:len(tok)-2] + "AA", tok[:20], "nope", strings.Repeat("A", 600)} {
		if resp, body := env.page("GET", env.URL+"/my-device/"+bad, "en", nil); resp.StatusCode != 404 || strings.Contains(body, id.DeviceID) {
			t.Fatalf("bad link %q: %d", bad, resp.StatusCode)
		}
		if resp, _ := env.page("POST", env.URL+"/my-device/"+bad+"/break-glass", "en", url.Values{"reason": {"rapid response, bed 12"}}); resp.StatusCode != 404 {
			t.Fatalf("bad link break-glass %q: %d", bad, resp.StatusCode)
		}
	}
	// The link route needs a device certificate.
	if code := env.call("POST", "/agent/v1/my-device-link", "", nil, nil); code != 401 {
		t.Fatalf("link without a certificate: %d", code)
	}
}

// The messaging app on a phone gets its device's page link with a fresh report signed by its
// attested key; a report it did not sign gets nothing.
func TestMyDeviceLinkForTheApp(t *testing.T) {
	env, appCA, _ := appEnv(t)
	env.uploadPushCert()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))
	app, other := env.iosApp(appCA, id), env.iosApp(appCA, id)
	signed := func(key *applesim.AppAttestKey, instance string) []byte {
		data, _ := json.Marshal(api.AppReportData{Nonce: env.appNonce()})
		assertion, err := key.Assert(data)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(api.AppReportRequest{InstanceID: instance,
			ClientData: base64.StdEncoding.EncodeToString(data), Assertion: base64.StdEncoding.EncodeToString(assertion)})
		return body
	}
	var link api.MyDeviceLink
	if code := env.call("POST", "/app/v1/my-device-link", "", signed(app.key, app.id), &link); code != 200 {
		t.Fatalf("app link: %d", code)
	}
	resp, html := env.page("GET", env.URL+strings.TrimPrefix(link.URL, env.PublicURL), "en", nil)
	if resp.StatusCode != 200 || !strings.Contains(html, "My device") {
		t.Fatalf("app's page: %d", resp.StatusCode)
	}
	if code := env.call("POST", "/app/v1/my-device-link", "", signed(other.key, app.id), nil); code == 200 {
		t.Fatal("a link for an instance was given on another instance's signature")
	}
}
