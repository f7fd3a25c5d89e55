package policies

import (
	"slices"
	"testing"
	"time"
)

// A policy that requires the messaging app makes the app a source: block_jailbroken with
// evidence required becomes observable on iPhones and iPads (the app reports it), and the app
// attestation rule itself is observable there. Without the requirement neither holds.
func TestCheckObservableMessagingApp(t *testing.T) {
	base := func(requireApp bool) *Policy {
		p, err := Parse([]byte("integrity:\n  block_jailbroken: true\n  jailbreak_evidence: required\n"))
		if err != nil {
			t.Fatal(err)
		}
		p.Integrity.RequireAppAttestation = requireApp
		return p
	}
	platforms := func(p *Policy, rule string) []Platform {
		for _, u := range CheckObservable(p, nil) {
			if u.Rule == rule && u.Enrollment == EnrollmentApple {
				return u.Platforms
			}
		}
		return nil
	}
	if got := platforms(base(false), "integrity.block_jailbroken"); !slices.Equal(got, []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS}) {
		t.Fatalf("without the app: jailbreak unobservable on %v", got)
	}
	withApp := base(true)
	if got := platforms(withApp, "integrity.block_jailbroken"); !slices.Equal(got, []Platform{PlatformMacOS}) {
		t.Fatalf("with the app: jailbreak unobservable on %v, want macos only", got)
	}
	if got := platforms(withApp, "integrity.require_app_attestation"); got != nil {
		t.Fatalf("the app attestation rule unobservable on %v", got)
	}
	// Sources as given are used as given: the app is added only to the default list.
	for _, u := range CheckObservable(withApp, Sources) {
		if u.Rule == "integrity.require_app_attestation" && slices.Equal(u.Platforms, []Platform{PlatformIOS, PlatformIPadOS}) {
			return
		}
	}
	t.Fatal("with explicit sources lacking the app, the attestation rule should be unobservable on iOS and iPadOS")
}

func TestEvaluateRequireAppAttestation(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	p, err := Parse([]byte("integrity:\n  require_app_attestation: true\nreporting:\n  max_age: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	codes := func(pl Platform, c *Claim[bool]) []string {
		pos := &Posture{Platform: pl, ReportedAt: now, AppAttested: c}
		var out []string
		for _, r := range Evaluate(p, pos, nil, now).Reasons {
			out = append(out, r.Code)
		}
		return out
	}
	for _, c := range []struct {
		name  string
		pl    Platform
		claim *Claim[bool]
		want  []string
	}{
		{"attested and fresh", PlatformIOS, Observe(true, ProvenanceAttested, now.Add(-time.Minute)), nil},
		{"unknown", PlatformIOS, nil, []string{CodeClaimUnknown}},
		{"stale", PlatformIPadOS, Observe(true, ProvenanceAttested, now.Add(-2*time.Hour)), []string{CodeClaimStale}},
		{"not attested", PlatformIOS, Observe(false, ProvenanceAttested, now), []string{CodeAppNotAttested}},
		{"the app's own word", PlatformIOS, Observe(true, ProvenanceApp, now), []string{CodeAppNotAttested}},
		{"not a phone", PlatformMacOS, nil, nil},
	} {
		if got := codes(c.pl, c.claim); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := Parse([]byte("integrity:\n  require_app_attestation: maybe\n")); err == nil {
		t.Fatal("a non-boolean require_app_attestation was accepted")
	}
}
