package policies

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// postureClaims maps each claim's JSON key to its field index in Posture.
func postureClaims(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	typ := reflect.TypeFor[Posture]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
			continue
		}
		if _, ok := f.Type.Elem().FieldByName("Source"); ok {
			out[strings.Split(f.Tag.Get("json"), ",")[0]] = i
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d claims in Posture", len(out))
	}
	return out
}

// fullPosture reports every fact Hale knows of, each at a value that meets any policy the tests
// use, so that removing one shows whether a rule needs it.
func fullPosture(p *Policy, pl Platform, now time.Time) *Posture {
	at := now.Add(-time.Minute)
	src := ProvenanceMDM
	var profiles []InstalledProfile
	for _, k := range []string{ProfilePasscode, ProfileRestrictions, ProfileFileVault, ProfileNotifications} {
		profiles = append(profiles, InstalledProfile{Identifier: ProfileIdentifier(p.Name, k)})
	}
	inForce := map[string]bool{}
	for _, r := range restrictions {
		inForce[r.Key] = r.restrictive
	}
	return &Posture{
		Platform: pl, ReportedAt: at,
		OS:                Observe(OSInfo{Version: "99.0", Build: "1", Distribution: "ubuntu", SecurityPatch: "2099-01-01"}, src, at),
		Supervised:        Observe(true, src, at),
		DiskEncrypted:     Observe(true, src, at),
		SwapEncrypted:     Observe(true, src, at),
		PasscodePresent:   Observe(true, src, at),
		PasscodeCompliant: Observe(true, src, at),
		PasswordRules: Observe(PasswordRules{Enforced: true, MinLength: 16, MinClasses: 4, MinDigits: 1,
			MinLetters: 1, MinOther: 4}, src, at),
		ScreenLockEnabled: Observe(true, src, at),
		ScreenLockTimeout: Observe(Duration(time.Minute), src, at),
		InstalledProfiles: Observe(profiles, src, at),
		Restrictions:      Observe(inForce, src, at),
		Jailbroken:        Observe(false, src, at),
		SIPEnabled:        Observe(true, src, at),
		SecureBoot:        Observe(true, src, at),
		AgentTampered:     Observe(false, src, at),
		FirewallEnabled:   Observe(true, src, at),
		KernelLockdown:    Observe("integrity", src, at),
		KernelTainted:     Observe(false, src, at),
		PendingSecurity:   Observe(0, src, at),
		RebootRequired:    Observe(false, src, at),
		GatekeeperActive:  Observe(true, src, at),
		NonCompliance:     Observe([]string{}, src, at),
	}
}

// unknownFacts are the facts a verdict says are missing: claim_unknown details, and "os" for
// an unreported OS version.
func unknownFacts(v Verdict) []string {
	var out []string
	for _, r := range v.Reasons {
		switch {
		case r.Code == CodeClaimUnknown:
			out = append(out, r.Detail)
		case r.Code == CodeOSUnknown && strings.Contains(r.Detail, "OS version"):
			out = append(out, claimOS)
		}
	}
	slices.Sort(out)
	return out
}

// observablePolicies are the policies the satisfiability tests run on: the fixtures and
// variants that reach the rules the fixtures leave out.
func observablePolicies(t *testing.T) []*Policy {
	t.Helper()
	var out []*Policy
	for _, f := range []string{"hipaa-texting.yaml", "byod.yaml", "kiosk.yaml"} {
		out = append(out, mustParseFixture(t, f))
	}
	for name, doc := range map[string]string{
		"required-jailbreak": string(mustReadFixture(t, "hipaa-texting.yaml")) + "\n",
		"lock-only":          "passcode: {max_inactivity_minutes: 5, max_failed_attempts: 4}\n",
		"settings-only":      "screenshots: {allowed: false}\nbackup: {cloud_document_sync_allowed: false}\n",
	} {
		if name == "required-jailbreak" {
			doc = strings.Replace(doc, "block_jailbroken: true", "block_jailbroken: true\n  jailbreak_evidence: required", 1)
		}
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.Name = name
		if name == "required-jailbreak" && p.Integrity.JailbreakEvidence != JailbreakRequired {
			t.Fatal("variant lost jailbreak_evidence")
		}
		out = append(out, p)
	}
	return out
}

// What ruleNeeds says a policy asks of a posture is what Evaluate asks: on every platform,
// removing one fact from a posture that has all of them is claim_unknown (os_unknown for the
// OS) exactly when some rule needs that fact and nothing else would do, and removing every
// alternative of a rule's need is claim_unknown for the first.
func TestRuleNeedsMatchEvaluate(t *testing.T) {
	claims := postureClaims(t)
	for _, p := range observablePolicies(t) {
		for _, pl := range append(slices.Clone(every), PlatformAndroid) {
			full := fullPosture(p, pl, t0)
			if v := Evaluate(p, full, nil, t0); !v.Compliant {
				t.Fatalf("%s on %s: full posture judged %v", p.Name, pl, v.Reasons)
			}
			needs := ruleNeeds(p, pl)
			for name, i := range claims {
				pos := *full
				reflect.ValueOf(&pos).Elem().Field(i).SetZero()
				var want []string
				if slices.ContainsFunc(needs, func(n need) bool { return slices.Equal(n.anyOf, []string{name}) }) {
					want = []string{name}
				}
				if got := unknownFacts(Evaluate(p, &pos, nil, t0)); !slices.Equal(got, want) {
					t.Errorf("%s on %s without %s: evaluation misses %v, ruleNeeds says %v", p.Name, pl, name, got, want)
				}
			}
			for _, n := range needs {
				if len(n.anyOf) < 2 {
					continue
				}
				pos := *full
				for _, name := range n.anyOf {
					reflect.ValueOf(&pos).Elem().Field(claims[name]).SetZero()
				}
				got := unknownFacts(Evaluate(p, &pos, nil, t0))
				if !slices.Contains(got, n.anyOf[0]) {
					t.Errorf("%s on %s without %v (%s): evaluation misses %v", p.Name, pl, n.anyOf, n.rule, got)
				}
			}
		}
	}
}

// Every claim a source lists is a posture claim, and every source says what it reads.
func TestSourcesNamePostureClaims(t *testing.T) {
	claims := postureClaims(t)
	for _, s := range Sources {
		if s.Name == "" || s.What == "" || s.Provenance == "" || len(s.Claims) == 0 {
			t.Errorf("source %+v is incomplete", s)
		}
		for pl, list := range s.Claims {
			if platformBit(pl) == 0 {
				t.Errorf("%s: unknown platform %q", s.Name, pl)
			}
			for _, c := range list {
				if _, ok := claims[c]; !ok {
					t.Errorf("%s on %s: %q is not a posture claim", s.Name, pl, c)
				}
			}
		}
	}
}

// The finding of issue 12: nothing Hale has observes jailbreak on iOS or iPadOS. With the
// default evidence the HIPAA fixture is observable there; with evidence required the check
// names the rule and exactly the platforms where nothing can report it.
func TestCheckObservableJailbreak(t *testing.T) {
	var hipaa, required *Policy
	for _, p := range observablePolicies(t) {
		switch p.Name {
		case "hipaa-texting":
			hipaa = p
		case "required-jailbreak":
			required = p
		}
	}
	for _, u := range CheckObservable(hipaa, nil) {
		if u.Enrollment == EnrollmentApple && (slices.Contains(u.Platforms, PlatformIOS) || slices.Contains(u.Platforms, PlatformIPadOS)) {
			t.Errorf("HIPAA is unobservable on an iPhone or iPad: %+v", u)
		}
		if u.Rule == "integrity.block_jailbroken" {
			t.Errorf("observed-only jailbreak rule reported: %+v", u)
		}
	}
	var jb []UnobservableRule
	for _, u := range CheckObservable(required, nil) {
		if u.Rule == "integrity.block_jailbroken" {
			jb = append(jb, u)
		}
	}
	if len(jb) != 1 || jb[0].Enrollment != EnrollmentApple ||
		!slices.Equal(jb[0].Platforms, []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS}) ||
		!slices.Equal(jb[0].Needs, []string{claimJailbroken}) {
		t.Fatalf("required jailbreak evidence: %+v", jb)
	}
	for _, want := range []string{"ios, ipados, macos", "enrolled as apple", "apple-mdm", "jailbreak_evidence: observed"} {
		if !strings.Contains(jb[0].Why, want) {
			t.Errorf("why %q does not say %q", jb[0].Why, want)
		}
	}

	// A source that reports jailbreak on iOS, whatever the enrollment (the messaging app's
	// App Attest), is one entry, and the rule is observable there.
	withApp := append(slices.Clone(Sources), Source{Name: "app-attest", Provenance: ProvenanceAttested,
		What: "the messaging app under App Attest", Claims: map[Platform][]string{PlatformIOS: {claimJailbroken}}})
	for _, u := range CheckObservable(required, withApp) {
		if u.Rule == "integrity.block_jailbroken" && !slices.Equal(u.Platforms, []Platform{PlatformIPadOS, PlatformMacOS}) {
			t.Errorf("with an iOS source: %+v", u)
		}
	}
}

// Rules come out sorted and grouped by enrollment; a rule another enrollment can observe on the
// same platform is still named for the one that cannot; a nil policy has no rules.
func TestCheckObservableShape(t *testing.T) {
	got := CheckObservable(mustParseFixture(t, "hipaa-texting.yaml"), nil)
	if !slices.IsSortedFunc(got, func(a, b UnobservableRule) int { return strings.Compare(a.Rule, b.Rule) }) {
		t.Errorf("not sorted by rule: %+v", got)
	}
	var tamper []string
	for _, u := range got {
		if len(u.Platforms) == 0 || len(u.Needs) == 0 || u.Why == "" {
			t.Errorf("incomplete: %+v", u)
		}
		if u.Rule == "integrity.block_agent_tampering" {
			tamper = append(tamper, u.Enrollment+":"+string(u.Platforms[0]))
		}
	}
	// An Apple-enrolled Mac has no agent to report tampering; the Windows agent has no tamper check.
	if !slices.Equal(tamper, []string{"apple:macos", "agent:windows"}) {
		t.Errorf("agent tampering unobservable on %v", tamper)
	}
	if CheckObservable(nil, nil) != nil {
		t.Error("nil policy")
	}
	if got := CheckObservable(&Policy{}, nil); len(got) != 0 {
		t.Errorf("empty policy: %+v", got)
	}
}
