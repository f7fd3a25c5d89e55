package mdmserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service/certauth"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// scepDevice enrolls a simulated Apple device the real way: an IT enrollment, the signed profile,
// an identity over SCEP with the profile's one-time challenge. It does not check in yet.
func (env *testEnv) scepDevice(ctx context.Context, opts ...applesim.Option) *applesim.Device {
	env.t.Helper()
	e := env.createEnrollment("apple")
	resp, profile := env.get(env.URL + strings.TrimPrefix(e.ProfileURL, env.PublicURL))
	if resp.StatusCode != http.StatusOK {
		env.t.Fatalf("profile: %d %s", resp.StatusCode, profile)
	}
	client := env.DeviceClient()
	dev, err := applesim.EnrollFromProfile(ctx, client, profile, append([]applesim.Option{applesim.WithLogger(servertest.Logger())}, opts...)...)
	if err != nil {
		env.t.Fatalf("SCEP enrollment: %v", err)
	}
	return dev
}

// impostor is a simulated Apple device that claims udid with someone else's identity.
func (env *testEnv) impostor(udid string, cert *x509.Certificate, key any, sign bool) *applesim.Device {
	env.t.Helper()
	client := env.DeviceClient()
	dev, err := applesim.New(env.URL+"/mdm", applesim.WithHTTPClient(client), applesim.WithIdentity(cert, key),
		applesim.WithUDID(udid), applesim.WithTopic(testTopic), applesim.WithSignMessage(sign), applesim.WithLogger(servertest.Logger()))
	if err != nil {
		env.t.Fatal(err)
	}
	return dev
}

// refusedWith checks that err is the HTTP refusal want, with problem code code.
func refusedWith(t *testing.T, what string, err error, want int, code string) {
	t.Helper()
	var he *applesim.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("%s: want HTTP %d, got %v", what, want, err)
	}
	if he.StatusCode != want || !strings.Contains(string(he.Body), `"code":"`+code+`"`) {
		t.Fatalf("%s: HTTP %d %s; want %d %s", what, he.StatusCode, he.Body, want, code)
	}
}

// The takeover the security review found, replayed over the real HTTP surface. An enrolled
// agent, with its own certificate or one freshly renewed, sends an Authenticate for a Mac's UDID;
// an insider with an Apple identity of their own (a second enrollment) does the same; the agent
// also tries to enroll a fake iPhone under its own record. Each is refused before anything is
// written: no certificate association, the Mac's lock still queued and its identity still
// working, no inventory change. Then the Mac polls and is locked.
func TestAgentCertificateCannotTakeOverAMac(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	mac := env.scepDevice(ctx, applesim.WithState(applesim.MacOSState()))
	if err := mac.Enroll(ctx); err != nil {
		t.Fatalf("Mac enrollment: %v", err)
	}
	macID := mac.Certificate().Subject.CommonName
	// The Mac is asleep (it does not poll): its lock stays queued during the attack.
	security := env.token("security")
	var lock securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+macID+"/lock", security, []byte(`{"reason":"left in theatre 3"}`), &lock); code != 202 {
		t.Fatalf("lock: %d", code)
	}

	agent, agentClient := env.enrolledAgent()
	agentCert := leafOf(t, agent.CertificateChain)
	var renewed agentIdentity
	body, _ := json.Marshal(map[string]string{"csr": newCSR(t, agent.key)})
	if code := apitest.Do(t, agentClient, "POST", env.URL+"/agent/v1/renew", "", body, &renewed); code != http.StatusOK {
		t.Fatalf("renew: %d", code)
	}
	renewedCert := leafOf(t, renewed.CertificateChain)

	insider := env.scepDevice(ctx) // an Apple identity of its own, never checked in

	before := env.snapshotMDM(mac.UDID(), macID, agent.DeviceID, insider.Certificate().Subject.CommonName)
	for _, sign := range []bool{true, false} {
		refusedWith(t, "agent identity as the Mac", env.impostor(mac.UDID(), agentCert, agent.key, sign).Enroll(ctx),
			http.StatusForbidden, "not-an-apple-identity")
		refusedWith(t, "renewed agent identity as the Mac", env.impostor(mac.UDID(), renewedCert, agent.key, sign).Enroll(ctx),
			http.StatusForbidden, "not-an-apple-identity")
		refusedWith(t, "agent identity as a new iPhone", env.impostor("FAKE-IPHONE-0001", agentCert, agent.key, sign).Enroll(ctx),
			http.StatusForbidden, "not-an-apple-identity")
		refusedWith(t, "another Apple identity as the Mac", env.impostor(mac.UDID(), insider.Certificate(), insider.Key(), sign).Enroll(ctx),
			http.StatusForbidden, "enrollment-not-owned")
	}
	after := env.snapshotMDM(mac.UDID(), macID, agent.DeviceID, insider.Certificate().Subject.CommonName)
	if diff := before.diff(after); diff != "" {
		t.Fatalf("a refused Authenticate wrote something: %s", diff)
	}
	for _, c := range []*x509.Certificate{agentCert, renewedCert, insider.Certificate()} {
		if has, err := env.MDMStoreForTest().HasCertHash(mdm.NewRequestWithContext(ctx, nil), certauth.HashCert(c)); err != nil || has {
			t.Errorf("certificate %s was associated with an enrollment (%v)", c.SerialNumber.Text(16), err)
		}
	}
	if _, err := env.InventoryForTest().GetByEnrollmentID(ctx, "FAKE-IPHONE-0001"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("the fake iPhone got a device record: %v", err)
	}

	// The real Mac is not locked out, and gets its lock.
	go func() { _ = mac.RunPushLoop(ctx, env.APNs) }()
	if _, err := mac.Poll(ctx); err != nil {
		t.Fatalf("the Mac's own poll after the attack: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := mac.WaitFor(wctx, func(s applesim.State, _ []applesim.CommandRecord) bool { return s.Locked }); err != nil {
		t.Fatalf("the Mac never got its lock: %v", err)
	}
	if rec := env.waitCommand(macID, lock.CommandID); rec.State != commands.StateAcknowledged {
		t.Fatalf("lock command %+v", rec.Record)
	}
}

// The same UDID enrolling again with a new identity takes over only from a device that has
// ended; a live device's enrollment is refused, and an Authenticate that would drop a queued
// wipe is refused too. A legitimate re-enrollment marks what nanomdm dropped from the queue.
func TestReenrollment(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := env.scepDevice(ctx)
	if err := first.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	firstID := first.Certificate().Subject.CommonName
	// The posture queries queued at enrollment stay unanswered: the device does not poll.
	waitOpenCommands(t, env, first.UDID(), 3)

	second := env.scepDevice(ctx, applesim.WithUDID(first.UDID()))
	refusedWith(t, "new identity for a live device", second.Enroll(ctx), http.StatusForbidden, "enrollment-not-owned")

	// IT unenrolls the first record; the device may now enroll as a new one.
	var d inventory.Device
	if code := env.call("DELETE", "/api/v1/devices/"+firstID, env.Admin, nil, &d); code != 200 {
		t.Fatalf("unenroll: %d", code)
	}
	if err := second.Enroll(ctx); err != nil {
		t.Fatalf("re-enrollment after unenroll: %v", err)
	}
	secondID := second.Certificate().Subject.CommonName
	if got, err := env.InventoryForTest().GetByEnrollmentID(ctx, first.UDID()); err != nil || got.ID != secondID {
		t.Fatalf("enrollment belongs to %+v (%v), want %s", got, err, secondID)
	}
	old, _ := env.InventoryForTest().Get(ctx, firstID)
	if old.EnrollmentID != "" || old.State != inventory.StateUnenrolled {
		t.Fatalf("old record %+v", old)
	}
	// nanomdm cleared the queue: the first record's unanswered queries are cancelled, not queued.
	recs, err := env.CommandsForTest().List(ctx, first.UDID())
	if err != nil {
		t.Fatal(err)
	}
	cancelled := 0
	for _, r := range recs {
		if r.RequestedBy == "system:enrollment" && r.State == commands.StateCancelled && r.Detail != "" {
			cancelled++
		}
	}
	if cancelled < 3 {
		t.Fatalf("commands after re-enrollment: %+v", recs)
	}

	// A wipe on its way: the device's own identity may not Authenticate again and drop it.
	security := env.token("security")
	var wipe securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+secondID+"/wipe", security, []byte(`{"reason":"stolen","mode":"full"}`), &wipe); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	refusedWith(t, "Authenticate with a wipe queued", second.Enroll(ctx), http.StatusConflict, "security-command-pending")
	if open, _ := env.CommandsForTest().Open(ctx, first.UDID()); !slices.ContainsFunc(open, func(r *commands.Record) bool { return r.RequestType == "EraseDevice" }) {
		t.Fatalf("the wipe is no longer queued: %+v", open)
	}
}

// Messages that name no device are 400, bodies over the limit 413, both problem+json.
func TestMDMBadRequests(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	ctx := context.Background()
	dev := env.scepDevice(ctx)
	cert, key := dev.Certificate(), dev.Key()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: env.RootCAs(), Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}}}}
	post := func(body []byte) (*http.Response, []byte) {
		req, _ := http.NewRequest("PUT", env.URL+"/mdm", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/x-apple-aspen-mdm-checkin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	authNoUDID := []byte(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>` +
		`<key>MessageType</key><string>Authenticate</string><key>Topic</key><string>` + testTopic + `</string></dict></plist>`)
	resp, body := post(authNoUDID)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("Authenticate without UDID: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = post(make([]byte, maxMDMBody+1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("oversized body: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = post([]byte("not a plist"))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("garbage: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// mdmSnapshot is what an Authenticate could change: device records, the enrollment's holder,
// Hale's command records and nanomdm's queue head for the UDID.
type mdmSnapshot map[string]string

func (env *testEnv) snapshotMDM(udid string, deviceIDs ...string) mdmSnapshot {
	env.t.Helper()
	ctx := context.Background()
	snap := mdmSnapshot{}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, id := range deviceIDs {
		d, err := env.InventoryForTest().Get(ctx, id)
		snap["device "+id] = js(d) + js(err)
	}
	holder, err := env.InventoryForTest().GetByEnrollmentID(ctx, udid)
	snap["holder"] = js(holder) + js(err)
	recs, err := env.CommandsForTest().List(ctx, udid)
	snap["commands"] = js(recs) + js(err)
	req := mdm.NewRequestWithContext(ctx, nil)
	req.EnrollID = &mdm.EnrollID{ID: udid, Type: mdm.Device}
	next, err := env.MDMStoreForTest().RetrieveNextCommand(req, false)
	if next != nil {
		snap["queue head"] = next.CommandUUID
	}
	snap["queue error"] = js(err)
	return snap
}

func (a mdmSnapshot) diff(b mdmSnapshot) string {
	for k, v := range a {
		if b[k] != v {
			return k + ": " + v + " became " + b[k]
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			return "new " + k
		}
	}
	return ""
}

// waitOpenCommands waits until the enrollment has at least n unanswered commands.
func waitOpenCommands(t *testing.T, env *testEnv, udid string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if open, err := env.CommandsForTest().Open(context.Background(), udid); err == nil && len(open) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d open commands for %s", n, udid)
}

// An Apple device's Authenticate names its platform and OS version: the policy is delivered at
// the first TokenUpdate without waiting for DeviceInformation, and the OS version is a posture
// claim at once. Command polls keep last_seen current.
func TestAppleAuthenticateFactsAndLastSeen(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	it := env.token("it")
	if code := env.call("PUT", "/api/v1/policies/texting", it, []byte(textingPolicy), nil); code != 200 {
		t.Fatalf("put policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"texting"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev := env.scepDevice(ctx)
	if err := dev.Enroll(ctx); err != nil { // no poll: nothing is answered, DeviceInformation included
		t.Fatal(err)
	}
	id := dev.Certificate().Subject.CommonName
	deadline := time.Now().Add(15 * time.Second)
	for {
		open, _ := env.CommandsForTest().Open(ctx, dev.UDID())
		if slices.ContainsFunc(open, func(r *commands.Record) bool { return r.RequestType == "InstallProfile" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no InstallProfile queued before DeviceInformation was answered: %+v", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, p, ok := env.ComplianceForTest().Verdict(id); !ok || p == nil || p.OS == nil || p.OS.Value.Version != dev.State().OSVersion {
		t.Fatalf("posture after Authenticate: %+v", p)
	}

	// A poll moves last_seen, but at most once a minute.
	stale := time.Now().Add(-2 * time.Minute).UTC()
	if _, err := env.InventoryForTest().Update(ctx, id, func(d *inventory.Device) error { d.LastSeen = stale; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	d, _ := env.InventoryForTest().Get(ctx, id)
	if !d.LastSeen.After(stale.Add(time.Minute)) {
		t.Fatalf("last_seen %v after a poll (was %v)", d.LastSeen, stale)
	}
}

// The reverse direction: an Apple device's identity, though a client certificate of the same CA,
// is refused on the agent API, so it cannot report agent posture for its device or renew there.
func TestAppleIdentityRefusedOnAgentAPI(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dev := env.scepDevice(ctx)
	if err := dev.Enroll(ctx); err != nil { // its certificate serial is now on its device record
		t.Fatal(err)
	}
	cert := dev.Certificate()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: env.RootCAs(), Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: dev.Key(), Leaf: cert}}}}}
	for _, path := range []string{"/agent/v1/report", "/agent/v1/renew"} {
		if code := apitest.Do(t, client, "POST", env.URL+path, "", []byte(`{}`), nil); code != http.StatusForbidden {
			t.Errorf("POST %s with an Apple identity: %d", path, code)
		}
	}
	if code := apitest.Do(t, client, "GET", env.URL+"/agent/v1/policy", "", nil, nil); code != http.StatusForbidden {
		t.Errorf("GET /agent/v1/policy with an Apple identity: %d", code)
	}
}
