package mdmserver_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
)

// signIn is the person at the account-driven sign-in page: it gives code, and returns the access
// token the page sends the device back with.
func (env *testEnv) signIn(code string) applesim.SignInFunc {
	return func(ctx context.Context, signInURL string) (string, error) {
		client := *env.Client
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := client.Get(signInURL)
		if err != nil {
			return "", err
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(page), `name="code"`) {
			env.t.Fatalf("sign-in page: %d %s", resp.StatusCode, page)
		}
		u, _ := url.Parse(signInURL)
		form := url.Values{"code": {code}, "user": {u.Query().Get("user-identifier")}}
		resp, err = client.PostForm(signInURL, form)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, applesim.LoginCallback+"?") {
			env.t.Fatalf("sign-in with the code: %d Location %q", resp.StatusCode, loc)
		}
		back, _ := url.Parse(loc)
		return back.Query().Get("access-token"), nil
	}
}

// Issue 16: a personal iPhone enrolls through account-driven User Enrollment (the well-known
// document, the 401 challenge, the sign-in page with the code IT issued, the user-enrollment
// profile), is managed with user-enrollment limits (no UDID or serial, no erase), and its
// "wipe", held under the two-person rule, removes the enrollment, the managed volume and the
// managed data, and is recorded as such.
func TestAccountDrivenUserEnrollment(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.AppleDDM = true; c.TwoPersonWipeGroups = []string{"personal"} })
	env.uploadPushCert()
	it, accessTok := env.token("it"), env.token("access")
	secA, secB := env.token("security"), env.token("security")
	env.applyExample(it, "byod.yaml", "byod")
	env.assignDefault(it, "byod")

	const account = "dr.grey@hospital.example"
	var bad api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", it, []byte(`{"owner":"dr.grey","group":"personal","platform":"agent","byod":true,"managed_apple_id":"`+account+`"}`), &bad); code != 400 {
		t.Fatalf("a BYOD agent enrollment: %d", code)
	}
	var e api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", it, []byte(`{"owner":"dr.grey","group":"personal","platform":"apple","byod":true,"managed_apple_id":"`+account+`"}`), &e); code != 201 ||
		!e.BYOD || e.ManagedAppleID != account || e.ProfileURL != "" || !strings.HasSuffix(e.SignInURL, "/enroll/apple/byod/signin") {
		t.Fatalf("create BYOD enrollment: %d %+v", code, e)
	}
	// The code does not fetch a device-enrollment profile (full erase rights), and is not spent
	// trying.
	if resp, _ := env.get(env.URL + "/enroll/apple/" + e.Token); resp.StatusCode != 401 {
		t.Fatalf("a BYOD code as a device enrollment profile: %d", resp.StatusCode)
	}
	// A wrong code at the sign-in page is refused.
	resp, err := env.Client.PostForm(env.URL+"/enroll/apple/byod/signin", url.Values{"code": {"hale_enr_0000"}})
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("a wrong code: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone, err := applesim.AccountDrivenEnroll(ctx, env.Client, env.URL, account, env.signIn(e.Token),
		applesim.WithState(applesim.IOSState()), applesim.WithLogger(servertest.Logger()))
	if err != nil {
		t.Fatalf("account-driven enrollment: %v", err)
	}
	if ue, eid := phone.UserEnrollment(); !ue || eid == "" {
		t.Fatal("the profile did not make a user enrollment")
	}
	if err := phone.Enroll(ctx); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	go func() { _ = phone.RunPushLoop(ctx, env.APNs) }()
	id := phone.Certificate().Subject.CommonName
	var dev api.DeviceDetail
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		env.call("GET", "/api/v1/devices/"+id, it, nil, &dev)
		if dev.Posture != nil && dev.Posture.Declarations != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the personal iPhone never reported on declarative management: %+v", dev)
		}
	}
	if !dev.UserEnrollment || dev.UDID != "" || dev.Serial != "" || dev.Owner != "dr.grey" || dev.Group != "personal" {
		t.Fatalf("device record %+v", dev.Device)
	}
	env.waitAccess(accessTok, id, "allowed", func(a access.Answer) bool { return a.Allow })

	// Lost mode is refused (Apple allows none on a user enrollment); a lock goes through.
	if code := env.call("POST", "/api/v1/devices/"+id+"/lost-mode", secA, []byte(`{"reason":"lost","message":"call the ward"}`), nil); code != 400 {
		t.Fatalf("lost mode on a personal device: %d", code)
	}
	var locked api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+id+"/lock", secA, []byte(`{"reason":"left on the bus"}`), &locked); code != 202 {
		t.Fatalf("lock a personal iPhone: %d", code)
	}
	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	defer lcancel()
	if err := phone.WaitFor(lctx, func(s applesim.State, _ []applesim.CommandRecord) bool { return s.Locked }); err != nil {
		t.Fatal(err)
	}
	// A full erase is refused with what a wipe does here; a wipe waits for a second person.
	var refused struct{ Detail string }
	if code := env.call("POST", "/api/v1/devices/"+id+"/wipe", secA, []byte(`{"reason":"left the hospital","mode":"full"}`), &refused); code != 400 ||
		!strings.Contains(refused.Detail, "never erased") {
		t.Fatalf("full erase of a personal device: %d %q", code, refused.Detail)
	}
	var held api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+id+"/wipe", secA, []byte(`{"reason":"left the hospital","mode":"selective"}`), &held); code != 202 ||
		held.State != api.StatePendingApproval || !strings.Contains(held.Effect, "removes the user enrollment") {
		t.Fatalf("wipe: %d %+v", code, held)
	}
	if code, _ := env.decide(held.ApprovalID, secB, "approve"); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := phone.WaitFor(wctx, func(s applesim.State, _ []applesim.CommandRecord) bool { return s.ManagedVolumeRemoved }); err != nil {
		t.Fatalf("the enrollment was never removed: %v", err)
	}
	st := phone.State()
	if st.Erased || len(st.Profiles) != 0 || len(st.DDM.Declarations) != 0 || !st.PasscodePresent || phone.Enrolled() {
		t.Fatalf("after the wipe: erased=%v profiles=%d declarations=%d enrolled=%v", st.Erased, len(st.Profiles), len(st.DDM.Declarations), phone.Enrolled())
	}
	for _, c := range phone.Commands() {
		if c.RequestType == "EraseDevice" {
			t.Fatal("a personal device was sent EraseDevice")
		}
	}
	env.waitAccess(accessTok, id, "denied as wiped", func(a access.Answer) bool { return !a.Allow && a.State == "wiped" })
	var ordered, wiped bool
	for _, en := range env.auditEntries(id) {
		ordered = ordered || en.Action == "device.wipe" && en.Details["effect"] == "unenroll" && en.Details["enrollment_type"] == "user"
		wiped = wiped || en.Action == "device.wiped"
	}
	if !ordered || !wiped {
		t.Errorf("audit: wipe ordered as unenroll %v, finished %v", ordered, wiped)
	}
}
