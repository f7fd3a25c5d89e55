package mdmserver_test

import (
	"crypto/tls"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/console"
)

// browser is a console user: the server's client with a cookie jar, remembering the CSRF token
// of the last page it read, as a browser's forms do.
type browser struct {
	t    *testing.T
	env  *testEnv
	c    *http.Client
	csrf string
	// base is the URL requests go to: the server's address, or its public URL.
	base string
	// last is the URL of the last answer, after redirects.
	last *url.URL
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (env *testEnv) browser() *browser {
	env.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		env.t.Fatal(err)
	}
	// Not env.Client: its transport checks every exchange against the OpenAPI document, and
	// the console is HTML, not API.
	c := &http.Client{Timeout: 30 * time.Second, Jar: jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.RootCAs()}}}
	env.t.Cleanup(c.CloseIdleConnections)
	return &browser{t: env.t, env: env, c: c, base: env.URL}
}

// do sends a request and returns the status and body of the final answer.
func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	b.last = res.Request.URL
	if m := csrfField.FindStringSubmatch(string(body)); m != nil {
		b.csrf = html.UnescapeString(m[1])
	}
	return res.StatusCode, string(body)
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	return b.do(req)
}

// post submits a form with the CSRF token of the last page read (unless form sets csrf).
func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// signIn signs in with token and fails the test unless the fleet page opens.
func (b *browser) signIn(token string) {
	b.t.Helper()
	if code, body := b.trySignIn(token); code != 200 || !strings.Contains(body, "<h1>Fleet</h1>") {
		b.t.Fatalf("sign in: %d %s", code, body)
	}
}

func (b *browser) trySignIn(token string) (int, string) {
	b.t.Helper()
	if code, _ := b.get("/console/signin"); code != 200 {
		b.t.Fatalf("sign-in page: %d", code)
	}
	return b.post("/console/signin", url.Values{"token": {token}})
}

// deviceID is the Hale device ID of the device udid names: what the console's typed
// confirmation asks for.
func (env *testEnv) deviceID(udid string) string {
	env.t.Helper()
	var d struct{ ID string }
	env.Call("GET", "/api/v1/devices/"+udid, env.Admin, nil, 200, &d)
	return d.ID
}

// consoleAudit lists the audit entries of action.
func (env *testEnv) consoleAudit(action string) []audit.Entry {
	env.t.Helper()
	var page struct{ Entries []audit.Entry }
	env.Call("GET", "/api/v1/audit?limit=500&action="+action, env.Admin, nil, 200, &page)
	return page.Entries
}

// Signing in takes a valid API token of a console role; the session cookie is HttpOnly,
// Secure, SameSite=Strict and __Host-; pages carry a strict CSP; each role sees the pages its
// JSON API routes allow and is refused (and audited) elsewhere; sign-in and sign-out are on
// the record, and a signed-out cookie opens nothing.
func TestConsoleSignInRolesSignOut(t *testing.T) {
	env := newTestEnv(t)
	b := env.browser()
	if code, body := b.trySignIn("hale_0000000000000000_" + strings.Repeat("0", 64)); code != 401 || !strings.Contains(body, "unknown, expired or revoked") {
		t.Fatalf("unknown token: %d", code)
	}
	if code, _ := b.trySignIn(env.token("access")); code != 403 {
		t.Fatalf("access-role token: %d, want 403", code)
	}

	// The sign-in answer's headers and cookie.
	b.get("/console/signin")
	form := url.Values{"token": {env.token("auditor")}, "csrf": {b.csrf}}
	req, _ := http.NewRequest("POST", env.URL+"/console/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noFollow := *b.c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var sc *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == console.CookieName {
			sc = c
		}
	}
	if res.StatusCode != 303 || sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" {
		t.Fatalf("sign-in: %d, cookie %+v", res.StatusCode, sc)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP %q", csp)
	}

	// The auditor reads the fleet, devices and audit, and may not wipe or see approvals' actions.
	for _, p := range []string{"/console/", "/console/devices", "/console/audit", "/console/approvals"} {
		if code, body := b.get(p); code != 200 || strings.Contains(body, `action="/console/approvals/`) {
			t.Fatalf("auditor GET %s: %d", p, code)
		}
	}
	dev := env.EnrollDevice()
	code, body := b.get("/console/devices/" + dev.UDID())
	if code != 200 || strings.Contains(body, "/wipe\"") || !strings.Contains(body, "Audit entries") {
		t.Fatalf("auditor's device page: %d (actions shown: %v)", code, strings.Contains(body, "/wipe\""))
	}
	if code, _ := b.post("/console/devices/"+dev.UDID()+"/wipe", url.Values{"reason": {"x"}, "confirm": {dev.UDID()}}); code != 403 {
		t.Fatalf("auditor wipes: %d, want 403", code)
	}
	if f := env.consoleAudit("auth.forbidden"); len(f) == 0 || f[len(f)-1].Role != "auditor" {
		t.Fatalf("refused wipe not audited: %+v", f)
	}

	// IT sees devices and may lock, but not the audit log (GET /api/v1/audit is security and
	// auditor only).
	it := env.browser()
	it.signIn(env.token("it"))
	if code, _ := it.get("/console/audit"); code != 403 {
		t.Fatalf("IT opens the audit page: %d, want 403", code)
	}
	if _, body := it.get("/console/devices/" + dev.UDID()); !strings.Contains(body, "/lock\"") || strings.Contains(body, "/wipe\"") || strings.Contains(body, "Audit entries") {
		t.Fatal("IT's device page offers the wrong actions or shows the audit entries")
	}

	if code, _ := b.post("/console/signout", nil); code != 200 || b.last.Path != "/console/signin" {
		t.Fatalf("sign out: %d at %s", code, b.last)
	}
	// The old cookie, replayed, opens nothing.
	replay := env.browser()
	replay.c.Jar.SetCookies(res.Request.URL, []*http.Cookie{{Name: console.CookieName, Value: sc.Value}})
	if code, _ := replay.get("/console/devices"); code != 200 || replay.last.Path != "/console/signin" {
		t.Fatalf("signed-out cookie: %d at %s", code, replay.last)
	}
	in, out := env.consoleAudit("console.signin"), env.consoleAudit("console.signout")
	if len(in) != 2 || len(out) != 1 || out[0].Role != "auditor" || out[0].Person == "" {
		t.Fatalf("sign-ins %d, sign-outs %+v", len(in), out)
	}
}

// Sign-in attempts are limited per source address: after ten, even a valid token waits.
func TestConsoleSigninRateLimit(t *testing.T) {
	env := newTestEnv(t)
	b := env.browser()
	for i := range 10 {
		if code, _ := b.trySignIn("hale_0000000000000000_" + strings.Repeat("0", 64)); code != 401 {
			t.Fatalf("attempt %d: %d, want 401", i+1, code)
		}
	}
	if code, body := b.trySignIn(env.Admin); code != 429 || !strings.Contains(body, "Too many sign-in attempts") {
		t.Fatalf("eleventh attempt: %d, want 429", code)
	}
}

// Every state-changing request needs the session's CSRF token, and a cross-site one is refused
// whatever it carries.
func TestConsoleCSRF(t *testing.T) {
	env := newTestEnv(t)
	dev := env.EnrollDevice()
	b := env.browser()
	b.signIn(env.token("security"))
	lock := "/console/devices/" + dev.UDID() + "/lock"
	form := url.Values{"reason": {"lost on the ward"}, "confirm": {env.deviceID(dev.UDID())}}
	// The wrong token differs from the right one in its first character, whatever that is.
	wrong := "x" + b.csrf[1:]
	if b.csrf[0] == 'x' {
		wrong = "y" + b.csrf[1:]
	}
	for name, csrf := range map[string]string{"none": "", "wrong": wrong} {
		f := url.Values{"csrf": {csrf}}
		for k, v := range form {
			f[k] = v
		}
		if code, body := b.post(lock, f); code != 403 || !strings.Contains(body, "CSRF") {
			t.Fatalf("%s CSRF token: %d", name, code)
		}
	}
	if code, _ := b.post("/console/signout", url.Values{"csrf": {""}}); code != 403 {
		t.Fatalf("sign-out without CSRF token: %d", code)
	}
	b.get("/console/")
	f := url.Values{"csrf": {b.csrf}}
	for k, v := range form {
		f[k] = v
	}
	req, _ := http.NewRequest("POST", env.URL+lock, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if code, _ := b.do(req); code != 403 {
		t.Fatalf("cross-site POST with the right token: %d", code)
	}
	// Sign-in itself needs the sign-in form's token.
	other := env.browser()
	if code, _ := other.post("/console/signin", url.Values{"token": {env.Admin}}); code != 403 {
		t.Fatalf("sign-in without the form's token: %d", code)
	}
	var d struct{ State string }
	env.Call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, 200, &d)
	if d.State != "active" {
		t.Fatalf("a refused form changed the device: %s", d.State)
	}
	if code, body := b.post(lock, form); code != 200 || !strings.Contains(body, "lock ordered") {
		t.Fatalf("lock with the token: %d", code)
	}
	env.Call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, 200, &d)
	if d.State != "locked" {
		t.Fatalf("after the console's lock: %s", d.State)
	}
}

// A session ends after the idle timeout (15 minutes by default) and at its absolute lifetime
// however active, and when its token is revoked; each end is audited with why.
func TestConsoleSessionExpiry(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now)},
		func(c *mdmserver.Config) { c.ConsoleSessionLifetime = time.Hour })
	b := env.browser()
	b.signIn(env.token("it"))
	clock.Advance(14 * time.Minute)
	if code, _ := b.get("/console/devices"); code != 200 || b.last.Path != "/console/devices" {
		t.Fatalf("after 14 idle minutes: %d at %s", code, b.last)
	}
	clock.Advance(15 * time.Minute)
	if code, body := b.get("/console/devices"); code != 200 || b.last.Path != "/console/signin" || !strings.Contains(body, "Your session ended") {
		t.Fatalf("after 15 idle minutes: %d at %s", code, b.last)
	}

	// Active all along, still out at the lifetime.
	b.signIn(env.token("it"))
	for range 6 {
		clock.Advance(10 * time.Minute)
		b.get("/console/")
	}
	if b.last.Path != "/console/signin" {
		t.Fatalf("a session past its 1h lifetime still opens pages: %s", b.last)
	}

	// A revoked token ends its session at the next request.
	tok := env.token("security")
	b.signIn(tok)
	var list struct {
		Tokens []struct{ ID, Role, State string }
	}
	env.Call("GET", "/api/v1/tokens", env.Admin, nil, 200, &list)
	id := strings.Split(tok, "_")[1]
	env.Call("DELETE", "/api/v1/tokens/"+id, env.Admin, nil, 200, nil)
	if b.get("/console/"); b.last.Path != "/console/signin" {
		t.Fatalf("revoked token's session still open at %s", b.last)
	}

	// A browser that never comes back: the sweep records its automatic logoff.
	gone := env.browser()
	gone.signIn(env.token("auditor"))
	clock.Advance(16 * time.Minute)
	env.SweepConsoleForTest()

	var why []string
	for _, e := range env.consoleAudit("console.session_expired") {
		why = append(why, e.Details["reason"])
	}
	if !slices.Equal(why, []string{"idle", "lifetime", "token_revoked", "idle"}) {
		t.Fatalf("session ends on the record: %q", why)
	}
	if code, _ := gone.get("/console/"); code != 200 || gone.last.Path != "/console/signin" {
		t.Fatalf("a swept session still opens pages: %s", gone.last)
	}
}

// The two-person rule in the console: a security person orders a wipe (typed confirmation and
// a reason), cannot approve it themselves, a second one approves it on the Approvals page, and
// the device page then shows the access answer denied and the wipe on the audit record.
func TestConsoleWipeWithSecondApprover(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	env.uploadPushCert()
	it := env.token("it")
	env.Call("PUT", "/api/v1/policies/texting", it, []byte(textingPolicy), 200, nil)
	env.assignDefault(it, "texting")
	dev := env.newDevice()
	env.waitAccess(env.token("access"), env.deviceID(dev.UDID()), "allowed", func(a access.Answer) bool { return a.Allow && a.Compliant })
	first, second := env.browser(), env.browser()
	first.signIn(env.token("security"))
	second.signIn(env.token("security"))

	devPage := "/console/devices/" + dev.UDID()
	if _, body := first.get(devPage); !strings.Contains(body, `<p class="big">Allowed</p>`) {
		t.Fatalf("the device page does not show the device allowed before the wipe: %s", body[strings.Index(body, "<main"):][:1500])
	}
	wipe := devPage + "/wipe"
	if _, body := first.post(wipe, url.Values{"reason": {"stolen"}, "confirm": {"not-the-id"}}); !strings.Contains(body, "type the device ID") {
		t.Fatal("a wipe without the typed confirmation was not refused")
	}
	if _, body := first.post(wipe, url.Values{"reason": {"stolen from the ward"}, "mode": {"full"}, "confirm": {env.deviceID(dev.UDID())}}); !strings.Contains(body, "Wipe held") {
		t.Fatalf("wipe not held: %s", flash(body))
	}
	_, body := first.get("/console/approvals")
	m := regexp.MustCompile(`action="/console/approvals/([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the pending wipe is not on the approvals page: %s", body)
	}
	if _, body := first.post("/console/approvals/"+m[1], url.Values{"decision": {"approve"}}); !strings.Contains(body, "Two-person rule") {
		t.Fatal("the requester approved their own wipe")
	}
	second.get("/console/approvals")
	if _, body := second.post("/console/approvals/"+m[1], url.Values{"decision": {"approve"}, "comment": {"confirmed by phone"}}); !strings.Contains(body, "Wipe sent") {
		t.Fatalf("second approver: %s", body)
	}
	// The wipe command is queued as the approval commits and pushed after: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body = second.get(devPage)
		if strings.Contains(body, "EraseDevice") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	access := body[strings.Index(body, `id="access"`):]
	access = access[:strings.Index(access, "</section>")]
	if !strings.Contains(access, "Denied") || (!strings.Contains(access, "<code>wipe_pending") && !strings.Contains(access, "<code>device_wiped")) {
		t.Fatalf("access after the wipe: %s", access)
	}
	if !strings.Contains(body, "device.wipe") || !strings.Contains(body, "EraseDevice") {
		t.Fatalf("the device page shows no wipe on the record (%v) or in the commands (%v)", strings.Contains(body, "device.wipe"),
			strings.Contains(body, "EraseDevice"))
	}
}

// The audit page verifies its entries against a checkpoint and key the user pastes: the
// server's own checkpoint and key pass, another key does not.
func TestConsoleAuditVerify(t *testing.T) {
	env := newTestEnv(t)
	b := env.browser()
	b.signIn(env.token("auditor"))
	var cp struct {
		Checkpoint  string `json:"checkpoint"`
		VerifierKey string `json:"verifier_key"`
	}
	env.Call("GET", "/api/v1/audit/checkpoint", env.Admin, nil, 200, &cp)
	b.get("/console/audit")
	code, body := b.post("/console/audit/verify", url.Values{"checkpoint": {cp.Checkpoint}, "key": {cp.VerifierKey}, "start": {"0"}, "limit": {"50"}})
	if code != 200 || !strings.Contains(body, " failed.") || strings.Contains(body, `class="bad"`) || !strings.Contains(body, "included") {
		t.Fatalf("verify with the right key: %d %s", code, verification(body))
	}
	if !strings.Contains(verification(body), ", 0 failed.") {
		t.Fatalf("verification: %s", verification(body))
	}
	_, other, _ := audit.GenerateKey("hale-audit")
	if _, body := b.post("/console/audit/verify", url.Values{"checkpoint": {cp.Checkpoint}, "key": {other}}); !strings.Contains(verification(body), "Not verified") {
		t.Fatalf("verify with another key: %s", verification(body))
	}
}

// flash is the message a page shows after an action.
func flash(body string) string {
	i := strings.Index(body, `<p class="flash`)
	if i < 0 {
		return "(no message shown)"
	}
	return body[i:min(len(body), i+400)]
}

func verification(body string) string {
	i := strings.Index(body, `id="verification"`)
	if i < 0 {
		return "(no verification shown)"
	}
	return body[i:min(len(body), i+300)]
}

// The fleet overview counts the devices and exports CSV; the device list pages with the store's
// cursor and finds a device by its UDID.
func TestConsoleFleetAndDevices(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	devs := []*applesim.Device{env.newDevice(), env.newDevice(), env.newDevice()}
	b := env.browser()
	b.signIn(env.token("it"))
	_, body := b.get("/console/")
	if !strings.Contains(body, "3 devices") {
		t.Fatalf("overview: %s", body)
	}
	req, _ := http.NewRequest("GET", env.URL+"/console/fleet.csv", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(string(csv), "total,devices,3,3,100.0") {
		t.Fatalf("CSV: %s", csv)
	}
	_, body = b.get("/console/devices?limit=2")
	next := regexp.MustCompile(`href="(/console/devices\?[^"]*cursor=[^"]+)"`).FindStringSubmatch(body)
	if strings.Count(body, `<td data-label="Device">`) != 2 || next == nil {
		t.Fatalf("first page: %d rows, next %v", strings.Count(body, `<td data-label="Device">`), next)
	}
	if _, body = b.get(html.UnescapeString(next[1])); strings.Count(body, `<td data-label="Device">`) != 1 {
		t.Fatal("second page")
	}
	if _, body := b.get("/console/devices?q=" + devs[1].UDID()); !strings.HasPrefix(b.last.Path, "/console/devices/d_") || !strings.Contains(body, devs[1].UDID()) {
		t.Fatalf("search by UDID landed on %s", b.last)
	}
	if code, _ := b.get("/console/devices?state=bogus"); code != 400 {
		t.Fatalf("unknown state filter: %d", code)
	}
	// No policy is assigned: every device is noncompliant, and each was seen just now.
	for q, want := range map[string]int{"compliance=noncompliant": 3, "compliance=compliant": 0, "unseen=1": 0} {
		_, body := b.get("/console/devices?" + q)
		if strings.Count(body, `<td data-label="Device">`) != want {
			t.Errorf("%s: %d rows, want %d", q, strings.Count(body, `<td data-label="Device">`), want)
		}
		if !strings.Contains(body, fmt.Sprintf("<caption>%d devices on this page", want)) || strings.Contains(body, "No device matches.") != (want == 0) {
			t.Errorf("%s: the caption or the empty table's message does not say %d devices", q, want)
		}
	}
	// htmx asks for the table only.
	req, _ = http.NewRequest("GET", env.URL+"/console/devices?access=denied", nil)
	req.Header.Set("HX-Request", "true")
	req.Header.Set("HX-Target", "device-table")
	if code, body := b.do(req); code != 200 || strings.Contains(body, "<html") || !strings.Contains(body, `id="device-table"`) {
		t.Fatalf("htmx partial: %d", code)
	}
}

// Sessions are kept in the store: a restart does not sign anyone out, and a signed-out
// session stays out after one.
func TestConsoleSessionsSurviveRestart(t *testing.T) {
	env := newTestEnv(t)
	stay, leave := env.browser(), env.browser()
	stay.signIn(env.token("auditor"))
	leave.signIn(env.token("it"))
	leave.post("/console/signout", nil)
	env.Restart()
	stay.base, leave.base = env.URL, env.URL
	if code, body := stay.get("/console/devices"); code != 200 || stay.last.Path != "/console/devices" || !strings.Contains(body, `<span class="role">auditor</span>`) {
		t.Fatalf("after a restart: %d at %s", code, stay.last)
	}
	// Its forms still carry the session's CSRF token.
	if code, _ := stay.post("/console/signout", nil); code != 200 || stay.last.Path != "/console/signin" {
		t.Fatalf("sign out after a restart: %d at %s", code, stay.last)
	}
	if code, _ := leave.get("/console/devices"); code != 200 || leave.last.Path != "/console/signin" {
		t.Fatalf("a signed-out session after a restart: %s", leave.last)
	}
}
