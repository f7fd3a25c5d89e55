package mdmserver_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Policies in the console: IT writes one, sees a validation problem on its line, dry-runs it
// (the devices that would fall out of compliance and the satisfiability check), applies it as
// version 1 and assigns it; an auditor reads it but has no editor and is refused applying.
func TestConsolePolicies(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	env.newDevice()
	it := env.browser()
	it.signIn(env.token("it"))
	if code, _ := it.get("/console/policies?open=texting"); code != 200 || it.last.Path != "/console/policies/texting" {
		t.Fatalf("open a new policy: %d at %s", code, it.last)
	}
	code, body := it.post("/console/policies/texting", url.Values{"source": {"passcode:\n  required: true\n  min_length: banana\n"}})
	if code != 400 || !regexp.MustCompile(`line 3</a>: <code>passcode.min_length</code>`).MatchString(body) {
		t.Fatalf("invalid policy: %d %s", code, body[strings.Index(body, "<main"):][:800])
	}
	code, body = it.post("/console/policies/texting/dry-run", url.Values{"source": {textingPolicy}, "kind": {"default"}})
	if code != 200 || !strings.Contains(body, "1 devices would be out of compliance") || !strings.Contains(body, "Satisfiability") {
		t.Fatalf("dry run: %d %s", code, body[strings.Index(body, "<main"):][:1200])
	}
	if _, body := it.post("/console/policies/texting", url.Values{"source": {textingPolicy}}); !strings.Contains(body, "version 1 applied") {
		t.Fatalf("apply: %s", flash(body))
	}
	if _, body := it.post("/console/assignments", url.Values{"policy": {"texting"}, "kind": {"default"}}); !strings.Contains(body, "Assigned texting") {
		t.Fatalf("assign: %s", flash(body))
	}
	var list struct {
		Assignments []struct{ Policy string }
	}
	env.Call("GET", "/api/v1/policies", env.Admin, nil, 200, &list)
	if len(list.Assignments) != 1 || list.Assignments[0].Policy != "texting" {
		t.Fatalf("assignments after the console: %+v", list)
	}
	if acts := env.consoleAudit("policy.put"); len(acts) != 1 || acts[0].Role != "it" {
		t.Fatalf("policy.put on the record: %+v", acts)
	}

	aud := env.browser()
	aud.signIn(env.token("auditor"))
	if code, body := aud.get("/console/policies/texting"); code != 200 || strings.Contains(body, `id="apply"`) || !strings.Contains(body, "require_alphanumeric") && !strings.Contains(body, "passcode") {
		t.Fatalf("auditor's policy page: %d", code)
	}
	if code, _ := aud.post("/console/policies/texting", url.Values{"source": {textingPolicy}}); code != 403 {
		t.Fatalf("auditor applies a policy: %d, want 403", code)
	}
}

// Enrollments in the console: IT creates one (its token and a QR code of the profile link on
// that one answer), it is listed, and revoked; a bad request is refused with the reason; an
// auditor lists them but may not create.
func TestConsoleEnrollments(t *testing.T) {
	env := newTestEnv(t)
	it := env.browser()
	it.signIn(env.token("it"))
	it.get("/console/enrollments")
	code, body := it.post("/console/enrollments", url.Values{"platform": {"apple"}, "owner": {"nurse.lee"}, "group": {"ward-3"}, "ttl": {"2d"}})
	tok := regexp.MustCompile(`id="enroll-token">([^<]+)<`).FindStringSubmatch(body)
	if code != 201 || tok == nil || !strings.Contains(body, `<img src="data:image/png;base64,`) || !strings.Contains(body, "/enroll/apple/"+tok[1]) {
		t.Fatalf("create: %d %s", code, body[strings.Index(body, "<main"):][:1000])
	}
	if strings.Contains(it.last.String(), tok[1]) {
		t.Fatal("the enrollment token is in the URL")
	}
	var list struct {
		Enrollments []struct{ ID, State, Owner string }
	}
	env.Call("GET", "/api/v1/enrollments", env.Admin, nil, 200, &list)
	if len(list.Enrollments) != 1 || list.Enrollments[0].Owner != "nurse.lee" || list.Enrollments[0].State != "pending" {
		t.Fatalf("enrollments: %+v", list)
	}
	if code, body := it.post("/console/enrollments", url.Values{"platform": {"apple"}, "owner": {"x"}, "group": {"y"}, "ttl": {"forever"}}); code != 400 || !strings.Contains(body, "ttl") {
		t.Fatalf("bad ttl: %d", code)
	}
	if _, body := it.post("/console/enrollments/"+list.Enrollments[0].ID+"/revoke", nil); !strings.Contains(body, "revoked") {
		t.Fatalf("revoke: %s", flash(body))
	}
	env.Call("GET", "/api/v1/enrollments", env.Admin, nil, 200, &list)
	if list.Enrollments[0].State != "revoked" {
		t.Fatalf("after revoking: %+v", list)
	}
	aud := env.browser()
	aud.signIn(env.token("auditor"))
	if code, body := aud.get("/console/enrollments"); code != 200 || strings.Contains(body, `id="create-enrollment"`) || !strings.Contains(body, "nurse.lee") {
		t.Fatalf("auditor's enrollments page: %d", code)
	}
	if code, _ := aud.post("/console/enrollments", url.Values{"platform": {"agent"}, "owner": {"a"}, "group": {"b"}}); code != 403 {
		t.Fatalf("auditor creates an enrollment: %d, want 403", code)
	}
}

// Bulk actions on the device list: the count must be typed; IT locks the ticked devices, each
// through the security service on the record, and assigns a policy to them; an auditor is
// offered neither and is refused both.
func TestConsoleBulk(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	a, b := env.deviceID(env.newDevice().UDID()), env.deviceID(env.newDevice().UDID())
	itTok := env.token("it")
	env.Call("PUT", "/api/v1/policies/texting", itTok, []byte(textingPolicy), 200, nil)
	it := env.browser()
	it.signIn(itTok)
	if _, body := it.get("/console/devices"); !strings.Contains(body, `name="device" value="`+a+`"`) || !strings.Contains(body, `id="bulk-lock"`) {
		t.Fatal("IT's device list offers no bulk actions")
	}
	ticked := url.Values{"device": {a, b}, "reason": {"ward closed for the night"}, "confirm": {"3"}}
	if _, body := it.post("/console/devices/bulk-lock", ticked); !strings.Contains(body, "type the number of devices ticked (2)") {
		t.Fatalf("wrong count: %s", flash(body))
	}
	ticked.Set("confirm", "2")
	if _, body := it.post("/console/devices/bulk-lock", ticked); !strings.Contains(body, "2 of 2 devices locked") {
		t.Fatalf("bulk lock: %s", flash(body))
	}
	for _, id := range []string{a, b} {
		var d struct{ State string }
		env.Call("GET", "/api/v1/devices/"+id, env.Admin, nil, 200, &d)
		if d.State != "locked" {
			t.Fatalf("%s after the bulk lock: %s", id, d.State)
		}
	}
	if n := len(env.consoleAudit("device.lock")); n != 2 {
		t.Fatalf("%d locks on the record, want 2", n)
	}
	it.get("/console/devices")
	if _, body := it.post("/console/devices/bulk-assign", url.Values{"device": {a, b}, "policy": {"texting"}, "confirm": {"2"}}); !strings.Contains(body, "assigned to 2 devices") {
		t.Fatalf("bulk assign: %s", flash(body))
	}
	var list struct {
		Assignments []struct {
			Target struct{ Kind, Name string }
			Policy string
		}
	}
	env.Call("GET", "/api/v1/policies", env.Admin, nil, 200, &list)
	if len(list.Assignments) != 2 || list.Assignments[0].Target.Kind != "device" {
		t.Fatalf("assignments: %+v", list.Assignments)
	}
	aud := env.browser()
	aud.signIn(env.token("auditor"))
	if _, body := aud.get("/console/devices"); strings.Contains(body, `name="device"`) {
		t.Fatal("an auditor is offered bulk actions")
	}
	for _, p := range []string{"/console/devices/bulk-lock", "/console/devices/bulk-assign"} {
		if code, _ := aud.post(p, url.Values{"device": {a}, "reason": {"x"}, "policy": {"texting"}, "confirm": {"1"}}); code != 403 {
			t.Fatalf("auditor %s: %d, want 403", p, code)
		}
	}
}

// A lost-device drill from the console: security locks a test device for the drill, and its
// report follows the records: the lock ordered, acknowledged by the device, the access API
// denying it, the revocation event (here on no stream: a failed step that says why), and the
// drill's entries proved in the signed log. IT may not read the report (it is the audit log's).
func TestConsoleDrill(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()
	id := env.deviceID(dev.UDID())
	sec := env.browser()
	sec.signIn(env.token("security"))
	if _, body := sec.get("/console/devices/" + id + "/drill"); !strings.Contains(body, "No drill has been run") {
		t.Fatal("a drill report before any drill")
	}
	if _, body := sec.post("/console/devices/"+id+"/drill", url.Values{"confirm": {id}}); !strings.Contains(body, "Drill started") {
		t.Fatalf("run the drill: %s", flash(body))
	}
	deadline := time.Now().Add(10 * time.Second)
	var report string
	for {
		_, body := sec.get("/console/devices/" + id + "/drill")
		report = body[strings.Index(body, `id="drill-report"`):]
		if strings.Count(report, `<strong class="ok">pass</strong>`) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`<strong class="ok">pass</strong> Lock the device`,
		`<strong class="ok">pass</strong> The device acknowledges the lock`,
		`<strong class="ok">pass</strong> The access API denies the device`,
		`<strong class="bad">fail</strong> A revocation event went out`,
		`<strong class="ok">pass</strong> The drill&#39;s audit entries are in the signed log`,
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report[:min(len(report), 2000)])
		}
	}
	it := env.browser()
	it.signIn(env.token("it"))
	if code, _ := it.get("/console/devices/" + id + "/drill"); code != 403 {
		t.Fatalf("IT reads the drill report: %d, want 403", code)
	}
}
