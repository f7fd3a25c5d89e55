package mdmserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"image/png"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/fakeamapi"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/posture"
)

const testEnterprise = "enterprises/LC0hale01"

// androidEnv is a server bound to a fake AMAPI enterprise, with a Pub/Sub pusher whose keys
// the server takes for Google's.
type androidEnv struct {
	*testEnv
	fake   *fakeamapi.Server
	pusher *fakeamapi.Pusher
	push   string // the push endpoint's URL
}

func newAndroidEnv(t *testing.T) *androidEnv {
	t.Helper()
	fake, err := fakeamapi.New(testEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	pusher, err := fakeamapi.NewPusher()
	if err != nil {
		t.Fatal(err)
	}
	keys := httptest.NewServer(pusher)
	t.Cleanup(keys.Close)
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithAndroidOptions(android.WithoutServiceAccountAuth())},
		func(c *mdmserver.Config) {
			c.AndroidAPIURL = fake.URL + "/"
			c.AndroidGoogleKeysURL = keys.URL
		})
	pusher.Client = env.Client // held to the OpenAPI document like every other exchange
	return &androidEnv{testEnv: env, fake: fake, pusher: pusher, push: env.URL + android.PushPath}
}

// serviceAccountKey is a service account key file with a real RSA key.
func serviceAccountKey(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	b, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "hale-test",
		"private_key_id": "k1", "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "hale-amapi@hale-test.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": "https://oauth2.googleapis.com/token"})
	return b
}

func (env *androidEnv) bind() {
	env.t.Helper()
	key := serviceAccountKey(env.t)
	body, _ := json.Marshal(map[string]any{"enterprise": testEnterprise, "topic": "projects/hale-test/topics/amapi",
		"service_account_key": json.RawMessage(key)})
	var b api.AndroidBinding
	if code := env.call("PUT", "/api/v1/android/binding", env.Admin, body, &b); code != 200 {
		env.t.Fatalf("bind: %d", code)
	}
	if b.Enterprise != testEnterprise || b.ServiceAccount != "hale-amapi@hale-test.iam.gserviceaccount.com" || b.PushAudience != env.PublicURL+android.PushPath {
		env.t.Fatalf("binding = %+v", b)
	}
	ent := env.fake.Enterprise(testEnterprise)
	if ent["pubsubTopic"] != "projects/hale-test/topics/amapi" || !slices.Equal(anyStrings(ent["enabledNotificationTypes"]), android.NotificationTypes) {
		env.t.Fatalf("enterprise notifications not configured: %v", ent)
	}
	if raw, err := os.ReadFile(env.Config.DataDir + "/hale.db"); err != nil || bytes.Contains(raw, []byte("BEGIN PRIVATE KEY")) {
		env.t.Fatalf("the service account key is stored in the clear (%v)", err)
	}
}

// statusReport pushes a device's resource as the given notification type and returns the
// answer's status code and the message ID.
func (env *androidEnv) statusReport(typ, name, id string) (int, string) {
	env.t.Helper()
	data, err := env.fake.DeviceJSON(name)
	if err != nil {
		env.t.Fatal(err)
	}
	code, id, err := env.pusher.Push(fakeamapi.Message{URL: env.push, Audience: env.PublicURL + android.PushPath,
		NotificationType: typ, Data: data, ID: id})
	if err != nil {
		env.t.Fatal(err)
	}
	return code, id
}

func anyStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// The end to end: bind, enroll a simulated phone, deliver the policy, a STATUS_REPORT
// push, evaluation, a compliance flip that reaches the access API and the SSF stream, lock,
// wipe; and the fake saw only requests that conform to the discovery document.
func TestAndroidEndToEnd(t *testing.T) {
	env := newAndroidEnv(t)
	ctx := context.Background()
	env.bind()
	it, sec, access := env.token("it"), env.token("security"), env.token("access")

	src, err := os.ReadFile("../examples/policies/hipaa-texting.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if code := env.call("PUT", "/api/v1/policies/hipaa", it, src, nil); code != 200 {
		t.Fatalf("put policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"hipaa"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}

	// Enrollment: an AMAPI token tied to the Hale enrollment, a link and a QR code.
	var e api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", it, []byte(`{"owner":"dr.chen","group":"icu","platform":"android","ttl":"2h"}`), &e); code != 201 || e.Android == nil {
		t.Fatalf("enroll: %d %+v", code, e)
	}
	if _, err := png.Decode(bytes.NewReader(e.Android.QRPNG)); err != nil {
		t.Errorf("qr_png is not a PNG: %v", err)
	}
	link, _ := url.Parse(e.Android.Link)
	value := link.Query().Get("et")
	if !strings.HasPrefix(e.Android.Link, android.EnrollLinkBase) || value == "" || !strings.Contains(e.Android.QRCode, value) {
		t.Fatalf("link %q, QR %q", e.Android.Link, e.Android.QRCode)
	}
	pol := env.fake.Policy(testEnterprise + "/policies/hale-hipaa")
	if pol == nil || pol["screenCaptureDisabled"] != true || pol["encryptionPolicy"] != "ENABLED_WITH_PASSWORD" || pol["minimumApiLevel"] != float64(34) {
		t.Fatalf("policy delivered: %v", pol)
	}
	if e.Android.Policy != testEnterprise+"/policies/hale-hipaa" {
		t.Errorf("token policy %s", e.Android.Policy)
	}

	// The phone enrolls and reports.
	name, err := env.fake.Enroll(value, fakeamapi.Device{AndroidVersion: "15", SecurityPatch: "2026-02-05", Encrypted: true, Secure: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := env.statusReport(android.TypeEnrollment, name, ""); code != 200 {
		t.Fatalf("enrollment push: %d", code)
	}
	var list struct{ Devices []api.Device }
	env.call("GET", "/api/v1/devices?owner=dr.chen", it, nil, &list)
	if len(list.Devices) != 1 || list.Devices[0].Platform != "android" || list.Devices[0].Group != "icu" || list.Devices[0].OS != "android" {
		t.Fatalf("devices: %+v", list.Devices)
	}
	id := list.Devices[0].ID
	var used []api.Enrollment
	var enrollments api.Enrollments
	env.call("GET", "/api/v1/enrollments", it, nil, &enrollments)
	for _, en := range enrollments.Enrollments {
		if en.ID == e.ID {
			used = append(used, en)
		}
	}
	if len(used) != 1 || used[0].State != "used" || used[0].DeviceID != id {
		t.Fatalf("enrollment after use: %+v", used)
	}

	stream := env.stream(access, `{"events_requested":["`+posture.EventComplianceChange+`"]}`)
	env.pollSETs(access, stream.StreamID, `{"returnImmediately":true}`)

	code, firstID := env.statusReport(android.TypeStatusReport, name, "")
	if code != 200 {
		t.Fatalf("status report: %d", code)
	}
	var dec posture.Decision
	if code := env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); code != 200 || !dec.Allow {
		t.Fatalf("compliant phone: %d %+v", code, dec)
	}
	var detail struct {
		Posture struct {
			Jailbroken struct{ Source string }
			OS         struct {
				Value struct {
					SecurityPatch string `json:"security_patch"`
				}
			}
		}
	}
	env.call("GET", "/api/v1/devices/"+id, it, nil, &detail)
	if detail.Posture.Jailbroken.Source != "attested" || detail.Posture.OS.Value.SecurityPatch != "2026-02-05" {
		t.Errorf("posture: %+v", detail.Posture)
	}

	// Play Integrity says the phone is compromised: the flip reaches the access API and SSF.
	env.fake.Update(name, func(d *fakeamapi.Device) { d.Rooted = true })
	if code, _ := env.statusReport(android.TypeStatusReport, name, ""); code != 200 {
		t.Fatalf("status report: %d", code)
	}
	if code := env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); code != 200 || dec.Allow || !hasReason(dec.Reasons, "jailbroken") {
		t.Fatalf("rooted phone: %d %+v", code, dec)
	}
	if _, sets := env.pollSETs(access, stream.StreamID, `{"returnImmediately":true}`); !setAbout(sets, id) {
		t.Errorf("no compliance change event for %s: %v", id, sets)
	}
	// The first report again, by its message ID: acknowledged, ignored.
	env.fake.Update(name, func(d *fakeamapi.Device) { d.Rooted = false })
	clean, _ := env.fake.DeviceJSON(name)
	tok, _ := env.pusher.IDToken(fakeamapi.GoogleIssuer, env.PublicURL+android.PushPath, 3600e9)
	if code := env.call("POST", android.PushPath, "", envelope(android.TypeStatusReport, firstID, clean), nil); code != 401 {
		t.Errorf("push without its ID token: %d", code)
	}
	if code, _, _ := env.pusher.PushRaw(env.push, tok, envelope(android.TypeStatusReport, firstID, clean), firstID); code != 200 {
		t.Errorf("replay: %d", code)
	}
	if env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); dec.Allow {
		t.Fatal("a replayed message made the phone compliant again")
	}
	// A fresh report of the repaired phone is taken.
	if code, _ := env.statusReport(android.TypeStatusReport, name, ""); code != 200 {
		t.Fatal("status report")
	}
	if env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); !dec.Allow {
		t.Fatalf("repaired phone: %+v", dec)
	}

	// Lock and lost mode go to AMAPI as commands; the records show them acknowledged.
	var sa api.SecurityAnswer
	if code := env.call("POST", "/api/v1/devices/"+id+"/lock", sec, []byte(`{"reason":"left on a bus"}`), &sa); code != 202 || sa.State != "acknowledged" {
		t.Fatalf("lock: %d %+v", code, sa)
	}
	if code := env.call("POST", "/api/v1/devices/"+id+"/lost-mode", sec, []byte(`{"reason":"still missing","message":"Call the ward","phone_number":"+1 555 0100"}`), &sa); code != 202 {
		t.Fatalf("lost mode: %d %+v", code, sa)
	}
	cmds := env.fake.Device(name).Commands
	if len(cmds) != 2 || cmds[0]["type"] != "LOCK" || cmds[1]["type"] != "START_LOST_MODE" ||
		cmds[1]["startLostModeParams"].(map[string]any)["lostPhoneNumber"].(map[string]any)["defaultMessage"] != "+1 555 0100" {
		t.Fatalf("commands at AMAPI: %v", cmds)
	}
	if env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); dec.Allow {
		t.Fatal("a lost phone is allowed")
	}

	// A company phone is wiped fully; a selective wipe is refused before anything happens.
	if code := env.call("POST", "/api/v1/devices/"+id+"/wipe", sec, []byte(`{"reason":"lost","mode":"selective"}`), nil); code != 400 {
		t.Errorf("selective wipe of a company phone: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+id+"/wipe", sec, []byte(`{"reason":"lost for good","mode":"full"}`), &sa); code != 202 || sa.DeviceState != "wiped" {
		t.Fatalf("wipe: %d %+v", code, sa)
	}
	if d := env.fake.Device(name); !d.Deleted || d.Commands[len(d.Commands)-1]["type"] != "WIPE" {
		t.Fatalf("wipe at AMAPI: %+v", d)
	}
	if code := env.call("GET", "/access/v1/devices/"+id, access, nil, &dec); code != 200 || dec.Allow {
		t.Fatalf("wiped phone: %+v", dec)
	}
	if v := env.fake.Violations(); len(v) > 0 {
		t.Errorf("requests not matching the discovery document: %v", v)
	}
	_ = ctx
}

func hasReason(rs []posture.Reason, code string) bool {
	return slices.ContainsFunc(rs, func(r posture.Reason) bool { return r.Code == code })
}

// setAbout reports whether a SET in sets names deviceID (payloads only: the SSF tests verify
// signatures).
func setAbout(sets map[string]string, deviceID string) bool {
	for _, s := range sets {
		parts := strings.Split(s, ".")
		if len(parts) != 3 {
			continue
		}
		p, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err == nil && bytes.Contains(p, []byte(deviceID)) && bytes.Contains(p, []byte(posture.EventComplianceChange)) {
			return true
		}
	}
	return false
}

// envelope is a Pub/Sub push body.
func envelope(typ, id string, data []byte) []byte {
	b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data),
		"attributes": map[string]string{"notificationType": typ}, "messageId": id}, "subscription": "projects/p/subscriptions/s"})
	return b
}
