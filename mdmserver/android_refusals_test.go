package mdmserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/fakeamapi"
	"github.com/halemdm/hale/mdmserver/android"
)

// enrollPhone makes a Hale android enrollment and enrolls a simulated phone with it; the
// phone has not reported yet.
func (env *androidEnv) enrollPhone(it, owner string, byod bool, d fakeamapi.Device) string {
	env.t.Helper()
	body, _ := json.Marshal(map[string]any{"owner": owner, "group": "icu", "platform": "android", "byod": byod})
	var e api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", it, body, &e); code != 201 || e.Android == nil {
		env.t.Fatalf("enroll: %d", code)
	}
	link, _ := url.Parse(e.Android.Link)
	name, err := env.fake.Enroll(link.Query().Get("et"), d)
	if err != nil {
		env.t.Fatal(err)
	}
	return name
}

func (env *androidEnv) deviceOf(it, owner string) api.Device {
	env.t.Helper()
	var list struct{ Devices []api.Device }
	env.call("GET", "/api/v1/devices?owner="+owner, it, nil, &list)
	if len(list.Devices) != 1 {
		env.t.Fatalf("devices of %s: %+v", owner, list.Devices)
	}
	return list.Devices[0]
}

var healthyPhone = fakeamapi.Device{AndroidVersion: "15", SecurityPatch: "2026-02-05", Encrypted: true, Secure: true}

// Pushes Hale must refuse, and what each leaves: nothing.
func TestAndroidPushRefusals(t *testing.T) {
	env := newAndroidEnv(t)
	it := env.token("it")
	// Before binding, even a well-signed push has nowhere to go.
	name := "enterprises/LC0hale01/devices/abc"
	dev, _ := json.Marshal(map[string]any{"name": name})
	if code, _, _ := env.pusher.Push(fakeamapi.Message{URL: env.push, NotificationType: android.TypeStatusReport, Data: dev,
		Audience: env.PublicURL + android.PushPath}); code != 409 {
		t.Errorf("push before binding: %d, want 409", code)
	}
	if code := env.call("POST", "/api/v1/enrollments", it, []byte(`{"owner":"o","group":"g","platform":"android"}`), nil); code != 409 {
		t.Errorf("android enrollment before binding: %d, want 409", code)
	}
	var none api.Enrollments
	env.call("GET", "/api/v1/enrollments", it, nil, &none)
	if len(none.Enrollments) != 1 || none.Enrollments[0].State != "revoked" {
		t.Errorf("the enrollment without an AMAPI token must be revoked: %+v", none.Enrollments)
	}
	env.bind()
	phone := env.enrollPhone(it, "nurse.kim", false, healthyPhone)
	data, _ := env.fake.DeviceJSON(phone)
	aud := env.PublicURL + android.PushPath
	other, _ := fakeamapi.NewPusher()
	forged, _ := other.IDToken(fakeamapi.GoogleIssuer, aud, time.Hour)
	wrongAud, _ := env.pusher.IDToken(fakeamapi.GoogleIssuer, "https://elsewhere.example/push", time.Hour)
	wrongIss, _ := env.pusher.IDToken("https://evil.example", aud, time.Hour)
	expired, _ := env.pusher.IDToken(fakeamapi.GoogleIssuer, aud, -time.Hour)
	good, _ := env.pusher.IDToken(fakeamapi.GoogleIssuer, aud, time.Hour)
	outside, _ := json.Marshal(map[string]any{"name": "enterprises/LC0other/devices/x1", "enrollmentTokenData": "hale_enr_x"})
	unenrolled, _ := json.Marshal(map[string]any{"name": testEnterprise + "/devices/stranger", "enrollmentTokenData": "not a hale token"})
	for _, c := range []struct {
		name, token string
		body        []byte
		want        int
	}{
		{"no token", "", envelope(android.TypeStatusReport, "m1", data), 401},
		{"signed by another key", forged, envelope(android.TypeStatusReport, "m2", data), 401},
		{"wrong audience", wrongAud, envelope(android.TypeStatusReport, "m3", data), 401},
		{"wrong issuer", wrongIss, envelope(android.TypeStatusReport, "m4", data), 401},
		{"expired", expired, envelope(android.TypeStatusReport, "m5", data), 401},
		{"tampered token", good[:len(good)-4] + "AAAA", envelope(android.TypeStatusReport, "m6", data), 401},
		{"malformed JSON", good, []byte(`{"message":{"data":`), 400},
		{"data not base64", good, []byte(`{"message":{"data":"%%%","messageId":"m7","attributes":{"notificationType":"STATUS_REPORT"}}}`), 400},
		{"device data not JSON", good, envelope(android.TypeStatusReport, "m8", []byte("{nope")), 400},
		{"no message ID", good, envelope(android.TypeStatusReport, "", data), 400},
		{"device outside the enterprise", good, envelope(android.TypeStatusReport, "m9", outside), 403},
		{"device with no Hale enrollment", good, envelope(android.TypeEnrollment, "m10", unenrolled), 403},
	} {
		if code, _, _ := env.pusher.PushRaw(env.push, c.token, c.body, ""); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	var list struct{ Devices []api.Device }
	env.call("GET", "/api/v1/devices", it, nil, &list)
	if len(list.Devices) != 0 {
		t.Fatalf("refused pushes made devices: %+v", list.Devices)
	}
	resp, err := env.Client.Get(env.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hale_android_pushes_total{outcome="unauthenticated"} 6`, `hale_android_pushes_total{outcome="malformed"} 4`,
		`hale_android_pushes_total{outcome="refused"} 3`, `hale_android_pushes_total{outcome="processed"} 0`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The refused message IDs were not consumed: the genuine message with one of them is taken,
	// once.
	for i, want := range []string{"processed", "duplicate"} {
		var ans android.PushAnswer
		code := env.call("POST", android.PushPath, good, envelope(android.TypeEnrollment, "m9", data), &ans)
		if code != 200 || ans.Status != want {
			t.Errorf("delivery %d: %d %+v, want %s", i, code, ans, want)
		}
	}
	env.deviceOf(it, "nurse.kim")
}

// The reconcile reads every page of devices.list and takes phones whose notifications were
// lost; a personal phone's wipe removes its work profile only.
func TestAndroidReconcileAndWorkProfile(t *testing.T) {
	env := newAndroidEnv(t)
	env.bind()
	it, sec := env.token("it"), env.token("security")
	owners := []string{"a.diaz", "b.diaz", "c.ngu"}
	var names []string
	for i, o := range owners {
		names = append(names, env.enrollPhone(it, o, i == 2, healthyPhone))
	}
	// No notification arrived; the fake answers two devices a page.
	n, err := env.AndroidForTest().Reconcile(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("Reconcile = %d, %v", n, err)
	}
	byod := env.deviceOf(it, "c.ngu")
	if byod.Platform != "android" {
		t.Fatalf("%+v", byod)
	}
	// The work profile got the work-profile policy (the default one: no Hale policy assigned).
	if got := env.fake.Device(names[2]); got == nil || !strings.HasSuffix(env.fake.Policy(testEnterprise + "/policies/hale-none-work-profile")["name"].(string), "work-profile") {
		t.Fatalf("work profile policy missing")
	}
	// A policy assigned afterwards reaches the phones without waiting for the hourly reconcile.
	src := []byte("passcode: {required: true, min_length: 6}\nscreenshots: {allowed: false}\n")
	if code := env.call("PUT", "/api/v1/policies/byod", it, src, nil); code != 200 {
		t.Fatalf("put policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"byod"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}
	wp := testEnterprise + "/policies/hale-byod-work-profile"
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, _ := env.fake.DeviceJSON(names[2])
		var d struct{ PolicyName string }
		_ = json.Unmarshal(raw, &d)
		if p := env.fake.Policy(wp); p != nil && d.PolicyName == wp {
			if pw := p["passwordPolicies"].([]any); len(pw) != 2 || p["screenCaptureDisabled"] != true {
				t.Fatalf("work profile policy %v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new policy did not reach the personal phone (policy %v, phone on %s)", env.fake.Policy(wp), d.PolicyName)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A phone that is off: the lock stays queued until the COMMAND notification says it ran.
	diaz := env.deviceOf(it, "b.diaz")
	env.fake.SlowCommands(true)
	var lock api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+diaz.ID+"/lock", sec, []byte(`{"reason":"shift over"}`), &lock); code != 202 || lock.State != "queued" {
		t.Fatalf("lock of a phone that is off: %d %+v", code, lock)
	}
	ops := env.fake.FinishCommands()
	if len(ops) != 1 {
		t.Fatalf("running operations: %d", len(ops))
	}
	if code, _, _ := env.pusher.Push(fakeamapi.Message{URL: env.push, Audience: env.PublicURL + android.PushPath,
		NotificationType: android.TypeCommand, Data: ops[0]}); code != 200 {
		t.Fatalf("COMMAND push: %d", code)
	}
	var cmd api.AgentCommand
	if code := env.call("GET", "/api/v1/devices/"+diaz.ID+"/commands/"+lock.CommandID, it, nil, &cmd); code != 200 || cmd.State != "acknowledged" {
		t.Errorf("lock after its COMMAND notification: %d %+v", code, cmd)
	}
	// Another lock whose COMMAND notification never comes, across a restart: the reconcile
	// asks AMAPI for the operation and records the result.
	var lock2 api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+diaz.ID+"/lock", sec, []byte(`{"reason":"again"}`), &lock2); code != 202 || lock2.State != "queued" {
		t.Fatalf("second lock: %d %+v", code, lock2)
	}
	env.Restart()
	it, sec = env.token("it"), env.token("security")
	env.fake.FinishCommands()
	if _, err := env.AndroidForTest().Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := env.call("GET", "/api/v1/devices/"+diaz.ID+"/commands/"+lock2.CommandID, it, nil, &cmd); code != 200 || cmd.State != "acknowledged" {
		t.Errorf("lock after a restart and a reconcile: %d %+v", code, cmd)
	}
	env.fake.SlowCommands(false)

	// A personal phone is never factory reset.
	if code := env.call("POST", "/api/v1/devices/"+byod.ID+"/wipe", sec, []byte(`{"reason":"left","mode":"full"}`), nil); code != 400 {
		t.Errorf("full wipe of a personal phone: %d, want 400", code)
	}
	var sa api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+byod.ID+"/wipe", sec, []byte(`{"reason":"left the hospital","mode":"selective"}`), &sa); code != 202 || sa.DeviceState != "wiped" {
		t.Fatalf("selective wipe: %d %+v", code, sa)
	}
	d := env.fake.Device(names[2])
	if !d.Deleted || len(d.Commands) != 0 {
		t.Fatalf("a personal phone's wipe is devices.delete (work profile removed): %+v", d)
	}
	var cmds api.AgentCommands
	if code := env.call("GET", "/api/v1/devices/"+byod.ID+"/commands", it, nil, &cmds); code != 200 || len(cmds.Commands) != 1 || cmds.Commands[0].State != "acknowledged" {
		t.Fatalf("commands: %d %+v", code, cmds)
	}
	// A company phone whose Android Device Policy predates the WIPE command is wiped by
	// devices.delete with wipeDataFlags.
	env.fake.Update(names[1], func(d *fakeamapi.Device) { d.OldDevicePolicy = true })
	if code := env.call("POST", "/api/v1/devices/"+diaz.ID+"/wipe", sec, []byte(`{"reason":"resigned","mode":"full"}`), &sa); code != 202 || sa.DeviceState != "wiped" {
		t.Fatalf("wipe by devices.delete: %d %+v", code, sa)
	}
	if d := env.fake.Device(names[1]); !d.Deleted || !slices.Equal(d.WipeDataFlags, []string{"WIPE_EXTERNAL_STORAGE"}) {
		t.Fatalf("fallback wipe at AMAPI: deleted %v, flags %v", d.Deleted, d.WipeDataFlags)
	}

	// A phone deleted in the enterprise by someone else is unenrolled at the next reconcile.
	env.fake.Update(names[0], func(d *fakeamapi.Device) { d.Deleted = true })
	if _, err := env.AndroidForTest().Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := env.deviceOf(it, "a.diaz"); d.State != "unenrolled" {
		t.Errorf("deleted phone: %s", d.State)
	}
	if v := env.fake.Violations(); len(v) > 0 {
		t.Errorf("requests not matching the discovery document: %v", v)
	}
}
