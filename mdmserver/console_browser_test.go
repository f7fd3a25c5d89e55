package mdmserver_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	_ "embed"
	"encoding/base64"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
)

// axeSource is axe-core, vendored for these tests only (testdata/axe/README.md).
//
//go:embed testdata/axe/axe.min.js
var axeSource string

var consoleShots = flag.String("console.screenshots", "", "write the browser tests' screenshots of the console's pages into this directory (../docs/console)")

// chromium starts a headless Debian chromium trusting only the test server's certificate, and
// returns a browser context for one person (cookies of its own). It skips the test when chromium
// is missing, unless CI is set: there it must run.
func chromium(t *testing.T, env *testEnv) (newPerson func() context.Context) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it from Debian's packages")
		}
		t.Skip("chromium is not installed (apt-get install chromium); the console's browser tests skip")
	}
	// The server's certificate comes from its own CA: trust its key, and nothing else invalid.
	u, _ := url.Parse(env.URL)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: env.RootCAs()})
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	conn.Close()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
		t.Cleanup(func() { cancelTimeout(); cancel() })
		return ctx
	}
}

// run runs browser actions and fails the test on error.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs a browser action that returns a value and fails the test on error.
func get[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// axeCheck runs axe-core in the page and fails on serious or critical violations; it also saves
// a screenshot of the page when -console.screenshots names a directory.
func axeCheck(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	run(t, ctx, "load axe into "+page, chromedp.Evaluate[chromedp.Void](axeSource))
	res := get(t, ctx, "axe on "+page, chromedp.Evaluate[struct {
		Passes int      `json:"passes"`
		Found  []string `json:"found"`
	}](`axe.run(document).then(r => ({passes: r.passes.length, found: r.violations
			.filter(v => v.impact === "serious" || v.impact === "critical")
			.map(v => v.impact + " " + v.id + ": " + v.help + " at " + v.nodes.map(n => n.target.join(" ")).join(", "))}))`,
		chromedp.EvalAwaitPromise))
	if res.Passes == 0 {
		t.Fatalf("axe checked nothing on %s", page)
	}
	found := res.Found
	for _, v := range found {
		t.Errorf("%s: accessibility: %s", page, v)
	}
	if *consoleShots != "" {
		png := get(t, ctx, "screenshot "+page, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(*consoleShots, page+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// browserSignIn signs in on the sign-in page with token and waits for the fleet page.
func browserSignIn(t *testing.T, ctx context.Context, env *testEnv, token string) {
	t.Helper()
	run(t, ctx, "sign in", chromedp.Navigate(env.URL+"/console/signin"), chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), token), chromedp.Click(chromedp.CSS(`#signin`)),
		chromedp.WaitVisible(`//h1[text()="Fleet"]`))
}

// In a real browser: a security person signs in, finds a device by its UDID, orders a wipe with
// the typed confirmation; it waits for a second approver; they sign out, a second security
// person signs in and approves, sees the device's access answer turn to denied and the wipe on
// its audit record, and signs out. Every page passes axe-core.
func TestConsoleBrowserWipe(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	newPerson := chromium(t, env)
	env.uploadPushCert()
	it := env.token("it")
	env.Call("PUT", "/api/v1/policies/texting", it, []byte(textingPolicy), 200, nil)
	env.assignDefault(it, "texting")
	dev := env.newDevice()
	id := env.deviceID(dev.UDID())
	env.waitAccess(env.token("access"), id, "allowed", func(a access.Answer) bool { return a.Allow && a.Compliant })
	env.newDevice() // a second device, for the lists

	// The second approver's token must exist before the request (security.Service.Decide).
	firstTok, secondTok := env.token("security"), env.token("security")
	ctx := newPerson()
	browserSignIn(t, ctx, env, firstTok)
	axeCheck(t, ctx, "fleet")
	run(t, ctx, "find the device", chromedp.Click(`//nav//a[text()="Devices"]`), chromedp.WaitVisible(chromedp.CSS(`#device-table`)))
	axeCheck(t, ctx, "devices")
	run(t, ctx, "open the device", chromedp.SendKeys(chromedp.CSS(`#q`), dev.UDID()), chromedp.Click(chromedp.CSS(`#filter`)),
		chromedp.WaitVisible(chromedp.CSS(`#device-id`)))
	state := get(t, ctx, "access", chromedp.Text(chromedp.CSS(`#access .big`)))
	if !strings.HasPrefix(state, "Allowed") {
		t.Fatalf("access before the wipe: %q", state)
	}
	axeCheck(t, ctx, "device")
	run(t, ctx, "order the wipe", chromedp.SendKeys(chromedp.CSS(`#wipe-reason`), "stolen from the ward"),
		chromedp.SendKeys(chromedp.CSS(`#wipe-confirm`), id), chromedp.Click(chromedp.CSS(`#wipe`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	msg := get(t, ctx, "message", chromedp.Text(chromedp.CSS(`.flash`)))
	if !strings.Contains(msg, "Wipe held") {
		t.Fatalf("after ordering the wipe: %q", msg)
	}
	run(t, ctx, "sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	axeCheck(t, ctx, "signin")

	browserSignIn(t, ctx, env, secondTok)
	run(t, ctx, "open approvals", chromedp.Click(`//nav//a[text()="Approvals"]`), chromedp.WaitVisible(chromedp.CSS(`.approval`)))
	axeCheck(t, ctx, "approvals")
	run(t, ctx, "approve", chromedp.SendKeys(chromedp.CSS(`.approval input[name=comment]`), "confirmed with the ward by phone"),
		chromedp.Click(chromedp.CSS(`.approval button[value=approve]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	if msg = get(t, ctx, "message", chromedp.Text(chromedp.CSS(`.flash`))); !strings.Contains(msg, "Wipe sent") {
		t.Fatalf("after approving: %q", msg)
	}
	run(t, ctx, "the device after the wipe", chromedp.Navigate(env.URL+"/console/devices/"+id), chromedp.WaitVisible(chromedp.CSS(`#device-id`)))
	state = get(t, ctx, "access", chromedp.Text(chromedp.CSS(`#access .big`)))
	auditText := get(t, ctx, "page", chromedp.Text(chromedp.CSS(`main`)))
	if !strings.HasPrefix(state, "Denied") || !strings.Contains(auditText, "device.wipe") {
		t.Fatalf("device after the wipe: access %q; audit shown: %v", state, strings.Contains(auditText, "device.wipe"))
	}
	run(t, ctx, "the audit page", chromedp.Click(`//nav//a[text()="Audit"]`), chromedp.WaitVisible(chromedp.CSS(`#audit-table`)))
	axeCheck(t, ctx, "audit")
	run(t, ctx, "the drill report", chromedp.Navigate(env.URL+"/console/devices/"+id+"/drill"), chromedp.WaitVisible(chromedp.CSS(`#drill-confirm`)))
	axeCheck(t, ctx, "drill")
	if *consoleShots != "" { // the device page on a phone-sized screen
		run(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(env.URL+"/console/devices/"+id), chromedp.WaitVisible(chromedp.CSS(`#device-id`)))
		axeCheck(t, ctx, "device-phone")
	}
	run(t, ctx, "the policies", chromedp.EmulateViewport(1280, 900), chromedp.Click(`//nav//a[text()="Policies"]`), chromedp.WaitVisible(`//h1[text()="Policies"]`))
	axeCheck(t, ctx, "policies")
	run(t, ctx, "a policy", chromedp.Click(`//a[text()="texting"]`), chromedp.WaitVisible(chromedp.CSS(`#source`)),
		chromedp.Click(chromedp.CSS(`#dry-run-button`)), chromedp.WaitVisible(chromedp.CSS(`#dry-run`)))
	axeCheck(t, ctx, "policy")
	run(t, ctx, "sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	if n := len(env.consoleAudit("console.signout")); n != 2 {
		t.Fatalf("%d sign-outs on the record, want 2", n)
	}

	// IT makes an enrollment: its token and QR code.
	browserSignIn(t, ctx, env, it)
	run(t, ctx, "new enrollment", chromedp.Click(`//nav//a[text()="Enrollments"]`), chromedp.WaitVisible(chromedp.CSS(`#owner`)),
		chromedp.SendKeys(chromedp.CSS(`#owner`), "nurse.lee"), chromedp.SendKeys(chromedp.CSS(`#group`), "ward-3"),
		chromedp.Click(chromedp.CSS(`#create-enrollment`)), chromedp.WaitVisible(chromedp.CSS(`#enroll-token`)))
	axeCheck(t, ctx, "enrollments")
}

// In a real browser: after 15 minutes without activity the next click lands on the sign-in page
// saying why.
func TestConsoleBrowserIdleLogoff(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now)})
	ctx := chromium(t, env)()
	browserSignIn(t, ctx, env, env.token("auditor"))
	clock.Advance(15*time.Minute + time.Second)
	run(t, ctx, "click after the idle timeout", chromedp.Click(`//nav//a[text()="Devices"]`), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	msg := get(t, ctx, "message", chromedp.Text(chromedp.CSS(`.flash`)))
	if !strings.Contains(msg, "session ended") {
		t.Fatalf("sign-in page after idle logoff says %q", msg)
	}
}
