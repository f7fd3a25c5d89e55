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

	put := env.applyExample(it, "hipaa-texting.yaml", "hipaa")
	if put.Version != 1 || put.Unobservable == nil {
		t.Fatalf("apply the example: %+v", put)
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
	env.assignDefault(it, "hipaa")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone, id := env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))

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
	report := env.healthyApp(appCA, id)
	appReport := func() access.Answer {
		t.Helper()
		report()
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
	_, id := env.checkedInDevice(ctx, applesim.WithState(applesim.MacOSState()))
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

// applyExample applies examples/policies/FILE as policy name with the IT token it, and returns
// the answer.
func (env *testEnv) applyExample(it, file, name string) api.PolicyApplied {
	env.t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "examples", "policies", file))
	if err != nil {
		env.t.Fatal(err)
	}
	var put api.PolicyApplied
	if code := env.call("PUT", "/api/v1/policies/"+name, it, doc, &put); code != 200 {
		env.t.Fatalf("apply %s: %d", file, code)
	}
	return put
}

// assignDefault makes policy name every device's.
func (env *testEnv) assignDefault(it, name string) {
	env.t.Helper()
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"`+name+`"}`), nil); code != 200 {
		env.t.Fatalf("assign %s: %d", name, code)
	}
}

// checkedInDevice enrolls a simulated Apple device the real way (scepDevice), checks it in, and
// runs its push loop until ctx ends; it returns the device and its Hale ID.
func (env *testEnv) checkedInDevice(ctx context.Context, opts ...applesim.Option) (*applesim.Device, string) {
	env.t.Helper()
	dev := env.scepDevice(ctx, opts...)
	if err := dev.Enroll(ctx); err != nil {
		env.t.Fatalf("enroll: %v", err)
	}
	go func() { _ = dev.RunPushLoop(ctx, env.APNs) }()
	return dev, dev.Certificate().Subject.CommonName
}
