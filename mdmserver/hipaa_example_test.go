package mdmserver_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/policies"
)

// reportAll has an Apple device answer every posture query, and waits until the access API
// answers from claims observed at or after since.
func (env *testEnv) reportAll(token, id string, since time.Time) access.Answer {
	env.t.Helper()
	for _, rt := range []string{"DeviceInformation", "SecurityInfo", "ProfileList", "Restrictions"} {
		var rec commands.Record
		if code := env.call("POST", "/api/v1/devices/"+id+"/commands", env.Admin, []byte(`{"request_type":"`+rt+`"}`), &rec); code != 202 {
			env.t.Fatalf("%s: %d", rt, code)
		}
		if got := env.waitCommand(id, rec.UUID); got.State != commands.StateAcknowledged {
			env.t.Fatalf("%s: %s", rt, got.State)
		}
	}
	return env.waitAccess(token, id, "fresh", func(a access.Answer) bool {
		p := a.Posture
		return p != nil && p.OS != nil && p.PasscodePresent != nil && p.InstalledProfiles != nil &&
			!p.OS.ObservedAt.Before(since) && !p.PasscodePresent.ObservedAt.Before(since) &&
			!p.InstalledProfiles.ObservedAt.Before(since) &&
			(p.Platform == policies.PlatformMacOS || p.Restrictions != nil && !p.Restrictions.ObservedAt.Before(since))
	})
}

// postureKeys are the claims a posture holds, by JSON key.
func postureKeys(t *testing.T, p *policies.Posture) []string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "platform")
	delete(m, "reported_at")
	return slices.Sorted(maps.Keys(m))
}

// Issue 12 item 4: a simulated iPhone, enrolled the real way and compliant in everything Apple
// MDM can observe, under examples/policies/hipaa-texting.yaml as shipped, is allowed and
// compliant, and still is a day later (past the 24 h grace the jailbreak rule used to run
// out). The same iPhone without a passcode has no data protection either, and is denied: at
// once (encryption_off gets no grace in the example) and still after the grace period, on
// fresh reports. The server's clock moves; the policy is the file.
//
// The example requires the messaging app (integrity.require_app_attestation): the iPhone runs
// the simulated app, registered with App Attest, which reports its jailbreak check, passcode and
// screen capture whenever the phone answers MDM (the app reports whenever it is opened).
func TestHIPAAExampleOnIPhone(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env, appCA, _ := appEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now)})
	env.uploadPushCert()
	it, accessTok := env.token("it"), env.token("access")

	doc, err := os.ReadFile(filepath.Join("..", "examples", "policies", "hipaa-texting.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var put struct {
		Version      int
		Unobservable []policies.UnobservableRule
	}
	if code := env.call("PUT", "/api/v1/policies/hipaa", it, doc, &put); code != 200 || put.Version != 1 || put.Unobservable == nil {
		t.Fatalf("apply the example: %d %+v", code, put)
	}
	for _, u := range put.Unobservable {
		if u.Enrollment == policies.EnrollmentApple && (slices.Contains(u.Platforms, policies.PlatformIOS) || slices.Contains(u.Platforms, policies.PlatformIPadOS)) {
			t.Errorf("the example has a rule nothing observes on an iPhone or iPad: %+v", u)
		}
	}
	var dry struct{ Unobservable []policies.UnobservableRule }
	if code := env.call("POST", "/api/v1/policies/hipaa/dry-run", it, nil, &dry); code != 200 || !slices.EqualFunc(dry.Unobservable, put.Unobservable, func(a, b policies.UnobservableRule) bool {
		return a.Rule == b.Rule && a.Enrollment == b.Enrollment && slices.Equal(a.Platforms, b.Platforms)
	}) {
		t.Errorf("dry-run's unobservable rules %+v differ from apply's %+v", dry.Unobservable, put.Unobservable)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"hipaa"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone := env.scepDevice(ctx, applesim.WithState(applesim.IOSState()))
	if err := phone.Enroll(ctx); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	go func() { _ = phone.RunPushLoop(ctx, env.APNs) }()
	id := phone.Certificate().Subject.CommonName

	// Without the app the iPhone is noncompliant (denied when the grace ends): nothing reports
	// its jailbreak state or the app.
	a := env.waitAccess(accessTok, id, "noncompliant for want of the app", func(a access.Answer) bool {
		var missing []string
		for _, r := range a.Reasons {
			missing = append(missing, r.Code+":"+r.Detail)
		}
		slices.Sort(missing)
		return !a.Compliant && slices.Equal(missing, []string{"claim_unknown:app_attested", "claim_unknown:jailbroken"})
	})
	if a.Posture.Jailbroken != nil || a.Posture.AppAttested != nil {
		t.Fatalf("app claims before the app: %+v", a.Posture)
	}
	app := env.iosApp(appCA, id)
	yes, no := true, false
	appReport := func() access.Answer {
		t.Helper()
		if code := env.iosReport(app.key, app.id, api.AppClaims{PasscodeSet: &yes, Jailbroken: &no, ScreenCaptured: &no, AppVersion: "3.2.1"}, nil); code != 200 {
			t.Fatalf("app report: %d", code)
		}
		return env.access(accessTok, id)
	}
	a = appReport()
	if !a.Allow || !a.Compliant || len(a.Reasons) != 0 || a.Posture.Jailbroken == nil || a.Posture.Jailbroken.Source != policies.ProvenanceApp ||
		a.Posture.AppAttested == nil || a.Posture.AppAttested.Source != policies.ProvenanceAttested {
		t.Fatalf("compliant iPhone with the app: allow=%v reasons %v posture %+v", a.Allow, a.Reasons, a.Posture)
	}
	// What the server keeps of the iPhone is what policies.Sources says Apple MDM and the
	// messaging app report.
	var want []string
	for _, s := range append(slices.Clone(policies.Sources), policies.MessagingApp) {
		if s.Name == "apple-mdm" || s.Name == policies.MessagingApp.Name {
			want = append(want, s.Claims[policies.PlatformIOS]...)
		}
	}
	want = slices.Compact(slices.Sorted(slices.Values(want)))
	if got := postureKeys(t, a.Posture); !slices.Equal(got, want) {
		t.Errorf("the server keeps %v of an iPhone; policies.Sources and MessagingApp say %v", got, want)
	}

	// A day and an hour later, on fresh answers, it is still compliant: no grace ran out.
	clock.Advance(25 * time.Hour)
	env.reportAll(accessTok, id, clock.Now())
	a = appReport()
	if !a.Allow || !a.Compliant || len(a.Reasons) != 0 {
		t.Fatalf("a day later: allow=%v compliant=%v reasons=%+v", a.Allow, a.Compliant, a.Reasons)
	}

	// The passcode is removed: no passcode, no data protection. Denied at once.
	phone.SetPasscodePresent(false)
	removed := clock.Now()
	var rec commands.Record
	env.call("POST", "/api/v1/devices/"+id+"/commands", env.Admin, []byte(`{"request_type":"SecurityInfo"}`), &rec)
	a = env.waitAccess(accessTok, id, "noncompliant", func(a access.Answer) bool { return !a.Compliant })
	codes := a.ReasonCodes()
	if a.Allow || a.InGrace || !slices.Contains(codes, policies.CodePasscodeMissing) || !slices.Contains(codes, policies.CodeEncryptionOff) ||
		!a.NoncompliantSince.Equal(removed) || !a.GraceUntil.Equal(a.NoncompliantSince) {
		t.Fatalf("without a passcode: allow=%v in_grace=%v since=%v grace_until=%v reasons=%v",
			a.Allow, a.InGrace, a.NoncompliantSince, a.GraceUntil, codes)
	}

	// Past the 24 h grace, on fresh answers (nothing stale), it is still denied for the passcode.
	clock.Advance(24*time.Hour + time.Minute)
	env.reportAll(accessTok, id, clock.Now())
	a = appReport()
	codes = a.ReasonCodes()
	if a.Allow || !slices.Contains(codes, policies.CodePasscodeMissing) || !a.NoncompliantSince.Equal(removed) ||
		slices.Contains(codes, policies.CodeReportStale) || slices.Contains(codes, policies.CodeClaimStale) ||
		slices.Contains(codes, policies.CodeClaimUnknown) {
		t.Fatalf("after grace: allow=%v since=%v reasons=%+v", a.Allow, a.NoncompliantSince, a.Reasons)
	}

	// A passcode again ends the run: allowed and compliant.
	phone.SetPasscodePresent(true)
	env.reportAll(accessTok, id, clock.Now())
	a = appReport()
	if !a.Allow || !a.Compliant {
		t.Fatalf("passcode restored: allow=%v reasons=%v", a.Allow, a.ReasonCodes())
	}
}

// What the server keeps of a Mac's answers to the posture queries is what policies.Sources says
// Apple MDM reports on macOS (TestHIPAAExampleOnIPhone checks the iPhone): the satisfiability
// check reasons from that table.
func TestAppleMDMSourceOnAMac(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	accessTok := env.token("access")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mac := env.scepDevice(ctx, applesim.WithState(applesim.MacOSState()))
	if err := mac.Enroll(ctx); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	go func() { _ = mac.RunPushLoop(ctx, env.APNs) }()
	id := mac.Certificate().Subject.CommonName
	a := env.waitAccess(accessTok, id, "reported", func(a access.Answer) bool {
		p := a.Posture
		return p != nil && p.Supervised != nil && p.SIPEnabled != nil && p.InstalledProfiles != nil
	})
	var want []string
	for _, s := range policies.Sources {
		if s.Name == "apple-mdm" {
			want = slices.Sorted(slices.Values(s.Claims[policies.PlatformMacOS]))
		}
	}
	if got := postureKeys(t, a.Posture); len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("the server keeps %v of a Mac's answers; policies.Sources says %v", got, want)
	}
}
