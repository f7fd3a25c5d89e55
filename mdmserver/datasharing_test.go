package mdmserver_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
)

// Issue 24: the HIPAA example's data_sharing rules reach a supervised iPhone as restrictions,
// count as met only while the phone reports them in force, and a phone that drops the profile
// is denied when grace ends, with the reasons that say so. What no device control enforces is
// said at apply and dry-run rather than pretended.
func TestDataSharingOnIPhone(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env, appCA, _ := appEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now)})
	env.uploadPushCert()
	it, accessTok := env.token("it"), env.token("access")

	put := env.applyExample(it, "hipaa-texting.yaml", "hipaa")
	notEnforced := map[string][]policies.Platform{}
	for _, r := range put.NotEnforced {
		notEnforced[r.Rule] = r.Platforms
	}
	// Apple has no keyboard key; Android renders the managed boundary and keyboards, not
	// AirDrop or dictation.
	every := []policies.Platform{policies.PlatformIOS, policies.PlatformIPadOS, policies.PlatformMacOS, policies.PlatformWindows, policies.PlatformLinux}
	computers := []policies.Platform{policies.PlatformMacOS, policies.PlatformWindows, policies.PlatformLinux}
	for rule, want := range map[string][]policies.Platform{
		"data_sharing.managed_open_in":       computers,
		"data_sharing.managed_pasteboard":    computers,
		"data_sharing.airdrop":               {policies.PlatformWindows, policies.PlatformLinux, policies.PlatformAndroid}, // allowAirDrop exists on macOS
		"data_sharing.dictation":             {policies.PlatformWindows, policies.PlatformLinux, policies.PlatformAndroid},
		"data_sharing.third_party_keyboards": every,
	} {
		if !slices.Equal(notEnforced[rule], want) {
			t.Errorf("%s not enforced on %v, want %v", rule, notEnforced[rule], want)
		}
	}
	var dry api.DryRun
	if code := env.call("POST", "/api/v1/policies/hipaa/dry-run", it, nil, &dry); code != 200 || len(dry.NotEnforced) != len(put.NotEnforced) || dry.Conflicts == nil {
		t.Fatalf("dry-run: %d %+v", code, dry)
	}
	env.assignDefault(it, "hipaa")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone, id := env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))

	// The example requires the messaging app's attested evidence: the phone runs it.
	env.waitAccess(accessTok, id, "reported", func(a access.Answer) bool { return a.Posture != nil && a.Posture.Restrictions != nil })
	appReport := env.healthyApp(appCA, id)
	appReport()
	a := env.waitAccess(accessTok, id, "compliant with the restrictions in force", func(a access.Answer) bool {
		return a.Allow && a.Compliant && a.Posture != nil && a.Posture.Restrictions != nil
	})
	inForce := a.Posture.Restrictions.Value
	for key, want := range map[string]bool{
		"allowOpenFromManagedToUnmanaged": false, "allowOpenFromUnmanagedToManaged": false,
		"requireManagedPasteboard": true, "allowAirDrop": false, "forceOnDeviceOnlyDictation": true,
	} {
		if got, ok := inForce[key]; !ok || got != want {
			t.Errorf("the phone reports %s = %v (present %v), want %v", key, got, ok, want)
		}
	}

	// The restrictions profile goes (a user with a way around supervision, a failed install):
	// the phone no longer lists it, nor reports its restrictions in force.
	restrictionsID := policies.ProfileIdentifier("hipaa", policies.ProfileRestrictions)
	phone.Update(func(s *applesim.State) {
		s.Profiles = slices.DeleteFunc(s.Profiles, func(p applesim.Profile) bool { return p.Identifier == restrictionsID })
	})
	dropped := clock.Now()
	env.reportAll(accessTok, id, dropped)
	appReport()
	a = env.access(accessTok, id)
	codes := a.ReasonCodes()
	if a.Compliant || !a.Allow || !a.InGrace || !slices.Contains(codes, policies.CodePolicyNotInstalled) ||
		!slices.Contains(codes, policies.CodeDataSharingAllowed) {
		t.Fatalf("profile removed: allow=%v compliant=%v in_grace=%v reasons=%v", a.Allow, a.Compliant, a.InGrace, codes)
	}
	if !slices.ContainsFunc(a.Reasons, func(r policies.Reason) bool {
		return r.Code == policies.CodeDataSharingAllowed && r.Detail == "allowOpenFromManagedToUnmanaged"
	}) {
		t.Errorf("no reason names the open-in key: %+v", a.Reasons)
	}

	// Past the grace period, on fresh answers, the phone is denied for it.
	clock.Advance(24*time.Hour + time.Minute)
	env.reportAll(accessTok, id, clock.Now())
	appReport()
	a = env.access(accessTok, id)
	codes = a.ReasonCodes()
	if a.Allow || !slices.Contains(codes, policies.CodeDataSharingAllowed) || slices.Contains(codes, policies.CodeClaimStale) {
		t.Fatalf("after grace: allow=%v reasons=%v", a.Allow, codes)
	}
}
