package policies

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	every = []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS, PlatformWindows, PlatformLinux}
)

// compliantPosture is a posture that meets the hipaa-texting fixture on pl, carrying only the
// facts the rules for pl need, so that a rule asking for an irrelevant fact shows up.
func compliantPosture(p *Policy, pl Platform, now time.Time) *Posture {
	at := now.Add(-time.Minute)
	src := ProvenanceAgent
	if appleMobile.has(pl) {
		src = ProvenanceMDM
	}
	pos := &Posture{Platform: pl, ReportedAt: at}
	switch pl {
	case PlatformIOS, PlatformIPadOS:
		pos.OS = Observe(OSInfo{Version: "17.5.1", Build: "21F90"}, src, at)
	case PlatformMacOS:
		pos.OS = Observe(OSInfo{Version: "14.6", Build: "23G80"}, src, at)
	case PlatformWindows:
		pos.OS = Observe(OSInfo{Version: "10.0.22631", Build: "22631.3447"}, src, at)
	case PlatformLinux:
		pos.OS = Observe(OSInfo{Version: "24.04", Distribution: "ubuntu", Kernel: "6.8.0-45-generic"}, src, at)
	}
	pos.DiskEncrypted = Observe(true, src, at)
	pos.PasscodePresent = Observe(true, src, at)
	pos.PasscodeCompliant = Observe(true, src, at)
	if desktops.has(pl) {
		pos.ScreenLockEnabled = Observe(true, src, at)
		pos.ScreenLockTimeout = Observe(Duration(5*time.Minute), src, at)
		pos.SecureBoot = Observe(true, src, at)
		pos.AgentTampered = Observe(false, src, at)
	}
	if pl == PlatformLinux {
		pos.SwapEncrypted = Observe(true, src, at)
	}
	if pl == PlatformMacOS {
		pos.SIPEnabled = Observe(true, ProvenanceMDM, at)
	}
	if appleMobile.has(pl) {
		pos.Supervised = Observe(true, ProvenanceMDM, at)
	}
	if appleAll.has(pl) {
		var profiles []InstalledProfile
		for _, k := range []string{ProfilePasscode, ProfileRestrictions, ProfileFileVault, ProfileNotifications} {
			profiles = append(profiles, InstalledProfile{Identifier: ProfileIdentifier(p.Name, k), UUID: derivedUUID(p.Name, "profile:"+k)})
		}
		profiles = append(profiles, InstalledProfile{Identifier: "com.example.other"})
		pos.InstalledProfiles = Observe(profiles, ProvenanceMDM, at)
	}
	return pos
}

func codesOf(v Verdict) []string {
	out := make([]string, 0, len(v.Reasons))
	for _, r := range v.Reasons {
		out = append(out, r.Code)
	}
	slices.Sort(out)
	return out
}

func TestEvaluateCompliantOnEveryPlatform(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	for _, pl := range every {
		v := Evaluate(p, compliantPosture(p, pl, t0), nil, t0)
		if !v.Compliant || len(v.Reasons) != 0 {
			t.Errorf("%s: verdict %+v, want compliant", pl, v)
		}
		if v.Reasons == nil {
			t.Errorf("%s: Reasons is nil; want an empty list so JSON shows []", pl)
		}
		if !v.NoncompliantSince.IsZero() || !v.GraceUntil.IsZero() || v.PolicyName != "hipaa-texting" || v.PolicyVersion != 3 || !v.EvaluatedAt.Equal(t0) {
			t.Errorf("%s: verdict %+v", pl, v)
		}
		if !v.Allowed(t0) {
			t.Errorf("%s: compliant verdict not allowed", pl)
		}
	}
}

type evalCase struct {
	name      string
	platforms []Platform
	mutate    func(p *Policy, pos *Posture)
	want      []string // reason codes, any order
	detail    string   // substring of some reason's detail
}

func runEvalCases(t *testing.T, fixture string, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		for _, pl := range tc.platforms {
			t.Run(tc.name+"/"+string(pl), func(t *testing.T) {
				p := mustParseFixture(t, fixture)
				pos := compliantPosture(p, pl, t0)
				if tc.mutate != nil {
					tc.mutate(p, pos)
				}
				v := Evaluate(p, pos, nil, t0)
				want := slices.Clone(tc.want)
				slices.Sort(want)
				if got := codesOf(v); !slices.Equal(got, want) {
					t.Fatalf("codes = %v, want %v (reasons %+v)", got, want, v.Reasons)
				}
				if v.Compliant != (len(want) == 0) {
					t.Fatalf("compliant = %v with reasons %v", v.Compliant, v.Reasons)
				}
				if tc.detail != "" && !slices.ContainsFunc(v.Reasons, func(r Reason) bool { return strings.Contains(r.Detail, tc.detail) }) {
					t.Errorf("no reason detail contains %q: %+v", tc.detail, v.Reasons)
				}
				for _, r := range v.Reasons {
					if !slices.Contains(ReasonCodes, r.Code) {
						t.Errorf("reason code %q is not in ReasonCodes", r.Code)
					}
				}
			})
		}
	}
}

func TestEvaluateRules(t *testing.T) {
	apple := []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS}
	mobile := []Platform{PlatformIOS, PlatformIPadOS}
	desk := []Platform{PlatformMacOS, PlatformWindows, PlatformLinux}
	agentOnly := []Platform{PlatformWindows, PlatformLinux}
	ago := func(d time.Duration) time.Time { return t0.Add(-d) }

	runEvalCases(t, "hipaa-texting.yaml", []evalCase{
		// Reporting.
		{name: "never reported", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.ReportedAt = time.Time{} },
			want: []string{CodeNoReport}},
		{name: "stale report", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.ReportedAt = ago(16 * time.Minute) },
			want: []string{CodeReportStale}},
		{name: "report exactly max age", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.ReportedAt = ago(15 * time.Minute) }},
		{name: "stale claim", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.DiskEncrypted.ObservedAt = ago(time.Hour) },
			want: []string{CodeClaimStale}, detail: "disk_encrypted"},
		{name: "claim without time uses report time", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.DiskEncrypted.ObservedAt = time.Time{} }},
		{name: "unknown platform", platforms: []Platform{"blackberry", ""}, want: []string{CodePlatformUnknown}},

		// Passcode.
		{name: "passcode missing", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.PasscodePresent.Value = false },
			want: []string{CodePasscodeMissing}},
		{name: "passcode unknown", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.PasscodePresent = nil },
			want: []string{CodeClaimUnknown}, detail: "passcode_present"},
		{name: "passcode noncompliant", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.PasscodeCompliant.Value = false },
			want: []string{CodePasscodeNoncompliant}},
		{name: "passcode compliance unknown", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.PasscodeCompliant = nil },
			want: []string{CodeClaimUnknown}, detail: "passcode_compliant"},
		{name: "compliance not needed without complexity", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Passcode.MinLength = 0
			pos.PasscodeCompliant = nil
		}},
		{name: "no passcode section", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Passcode = nil
			pos.PasscodePresent = nil
			pos.ScreenLockEnabled = nil
		}},

		// Screen lock: desktops only.
		{name: "screen lock off", platforms: agentOnly, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockEnabled.Value = false },
			want: []string{CodeScreenLockOff}},
		{name: "screen lock off mac", platforms: []Platform{PlatformMacOS}, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockEnabled.Value = false },
			want: []string{CodeScreenLockOff}},
		{name: "screen lock timeout too long", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockTimeout.Value = Duration(6 * time.Minute) },
			want: []string{CodeScreenLockTimeoutTooLong}},
		{name: "screen lock without timeout", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockTimeout.Value = 0 },
			want: []string{CodeScreenLockTimeoutTooLong}},
		{name: "screen lock unknown", platforms: agentOnly, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockEnabled = nil },
			want: []string{CodeClaimUnknown}, detail: "screen_lock_enabled"},
		{name: "screen lock timeout unknown", platforms: agentOnly, mutate: func(_ *Policy, pos *Posture) { pos.ScreenLockTimeout = nil },
			want: []string{CodeClaimUnknown}, detail: "screen_lock_timeout"},
		{name: "mac screen lock enforced by installed profile", platforms: []Platform{PlatformMacOS}, mutate: func(_ *Policy, pos *Posture) {
			pos.ScreenLockEnabled, pos.ScreenLockTimeout = nil, nil
		}},
		{name: "mac screen lock unknown without profile", platforms: []Platform{PlatformMacOS}, mutate: func(p *Policy, pos *Posture) {
			pos.ScreenLockEnabled = nil
			pos.InstalledProfiles.Value = slices.DeleteFunc(pos.InstalledProfiles.Value, func(ip InstalledProfile) bool {
				return ip.Identifier == ProfileIdentifier(p.Name, ProfilePasscode)
			})
		}, want: []string{CodeClaimUnknown, CodePolicyNotInstalled}, detail: "screen_lock_enabled"},
		{name: "screen lock not checked on mobile", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.ScreenLockEnabled = Observe(false, ProvenanceMDM, pos.ReportedAt)
		}},

		// Encryption.
		{name: "encryption off", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.DiskEncrypted.Value = false },
			want: []string{CodeEncryptionOff}},
		{name: "encryption unknown", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.DiskEncrypted = nil },
			want: []string{CodeClaimUnknown}, detail: "disk_encrypted"},
		{name: "swap unencrypted", platforms: []Platform{PlatformLinux}, mutate: func(_ *Policy, pos *Posture) { pos.SwapEncrypted.Value = false },
			want: []string{CodeSwapUnencrypted}},
		{name: "swap unknown", platforms: []Platform{PlatformLinux}, mutate: func(_ *Policy, pos *Posture) { pos.SwapEncrypted = nil },
			want: []string{CodeClaimUnknown}, detail: "swap_encrypted"},
		{name: "swap only matters on linux", platforms: []Platform{PlatformWindows, PlatformMacOS, PlatformIOS}, mutate: func(_ *Policy, pos *Posture) {
			pos.SwapEncrypted = Observe(false, ProvenanceAgent, pos.ReportedAt)
		}},
		{name: "encryption not required", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Encryption.Required = false
			pos.DiskEncrypted.Value = false
		}},

		// OS.
		{name: "os too old", platforms: every, mutate: func(_ *Policy, pos *Posture) {
			pos.OS.Value.Version = map[Platform]string{PlatformIOS: "17.3.1", PlatformIPadOS: "16.7", PlatformMacOS: "14.4.1",
				PlatformWindows: "10.0.19045", PlatformLinux: "22.03"}[pos.Platform]
		}, want: []string{CodeOSTooOld}, detail: "older than the minimum"},
		{name: "os unknown", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.OS = nil },
			want: []string{CodeOSUnknown}},
		{name: "os unparseable", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.OS.Value.Version = "unknown" },
			want: []string{CodeOSUnknown}, detail: "not a version"},
		{name: "os stale", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.OS.ObservedAt = ago(20 * time.Minute) },
			want: []string{CodeClaimStale}, detail: "os"},
		{name: "linux other distribution", platforms: []Platform{PlatformLinux}, mutate: func(_ *Policy, pos *Posture) {
			pos.OS.Value = OSInfo{Version: "40", Distribution: "fedora"}
		}, want: []string{CodeOSUnsupported}, detail: "fedora"},
		{name: "linux debian meets its own minimum", platforms: []Platform{PlatformLinux}, mutate: func(_ *Policy, pos *Posture) {
			pos.OS.Value = OSInfo{Version: "12", Distribution: "debian"}
		}},
		{name: "linux distribution unreported", platforms: []Platform{PlatformLinux}, mutate: func(_ *Policy, pos *Posture) {
			pos.OS.Value.Distribution = ""
		}, want: []string{CodeOSUnknown}, detail: "distribution"},
		{name: "windows revision below minimum", platforms: []Platform{PlatformWindows}, mutate: func(p *Policy, pos *Posture) {
			p.OS.Windows = "10.0.22631.3500"
		}, want: []string{CodeOSTooOld}},
		{name: "no os section", platforms: every, mutate: func(p *Policy, pos *Posture) { p.OS = nil; pos.OS = nil }},
		{name: "platform without minimum", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.OS = &OSPolicy{}
			pos.OS = nil
		}},

		// Integrity.
		{name: "jailbroken", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.Jailbroken = Observe(true, ProvenanceAttested, pos.ReportedAt)
		}, want: []string{CodeJailbroken}},
		// Nothing Hale has reports jailbreak on iOS: by default an unreported device is not
		// denied for it (it used to be claim_unknown, so no iPhone could ever comply).
		{name: "jailbreak unreported", platforms: every},
		{name: "jailbreak reported long ago", platforms: every, mutate: func(_ *Policy, pos *Posture) {
			pos.Jailbroken = Observe(true, ProvenanceAgent, pos.ReportedAt.Add(-48*time.Hour))
		}, want: []string{CodeJailbroken}},
		{name: "not jailbroken long ago", platforms: every, mutate: func(_ *Policy, pos *Posture) {
			pos.Jailbroken = Observe(false, ProvenanceAgent, pos.ReportedAt.Add(-48*time.Hour))
		}},
		{name: "jailbreak unreported, evidence required", platforms: every, mutate: func(p *Policy, _ *Posture) {
			p.Integrity.JailbreakEvidence = JailbreakRequired
		}, want: []string{CodeClaimUnknown}, detail: "jailbroken"},
		{name: "jailbreak report stale, evidence required", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Integrity.JailbreakEvidence = JailbreakRequired
			pos.Jailbroken = Observe(false, ProvenanceAgent, pos.ReportedAt.Add(-48*time.Hour))
		}, want: []string{CodeClaimStale}, detail: "jailbroken"},
		{name: "not jailbroken, evidence required", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Integrity.JailbreakEvidence = JailbreakRequired
			pos.Jailbroken = Observe(false, ProvenanceAgent, pos.ReportedAt)
		}},
		{name: "jailbroken, evidence required", platforms: every, mutate: func(p *Policy, pos *Posture) {
			p.Integrity.JailbreakEvidence = JailbreakRequired
			pos.Jailbroken = Observe(true, ProvenanceAgent, pos.ReportedAt)
		}, want: []string{CodeJailbroken}},
		{name: "rooted desktop reported", platforms: desk, mutate: func(_ *Policy, pos *Posture) {
			pos.Jailbroken = Observe(true, ProvenanceAgent, pos.ReportedAt)
		}, want: []string{CodeJailbroken}},
		{name: "sip disabled", platforms: []Platform{PlatformMacOS}, mutate: func(_ *Policy, pos *Posture) { pos.SIPEnabled.Value = false },
			want: []string{CodeSIPDisabled}},
		{name: "sip unknown", platforms: []Platform{PlatformMacOS}, mutate: func(_ *Policy, pos *Posture) { pos.SIPEnabled = nil },
			want: []string{CodeClaimUnknown}, detail: "sip_enabled"},
		{name: "sip only on macos", platforms: []Platform{PlatformWindows, PlatformLinux, PlatformIOS}, mutate: func(_ *Policy, pos *Posture) {
			pos.SIPEnabled = Observe(false, ProvenanceAgent, pos.ReportedAt)
		}},
		{name: "secure boot off", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.SecureBoot.Value = false },
			want: []string{CodeSecureBootOff}},
		{name: "secure boot unknown", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.SecureBoot = nil },
			want: []string{CodeClaimUnknown}, detail: "secure_boot"},
		{name: "agent tampered", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.AgentTampered.Value = true },
			want: []string{CodeAgentTampered}},
		{name: "agent tamper state unknown", platforms: desk, mutate: func(_ *Policy, pos *Posture) { pos.AgentTampered = nil },
			want: []string{CodeClaimUnknown}, detail: "agent_tampered"},

		// Apple profiles and restrictions.
		{name: "profiles unknown", platforms: apple, mutate: func(_ *Policy, pos *Posture) { pos.InstalledProfiles = nil },
			want: []string{CodeClaimUnknown}, detail: "installed_profiles"},
		{name: "restrictions profile missing", platforms: apple, mutate: func(p *Policy, pos *Posture) {
			pos.InstalledProfiles.Value = slices.DeleteFunc(pos.InstalledProfiles.Value, func(ip InstalledProfile) bool {
				return ip.Identifier == ProfileIdentifier(p.Name, ProfileRestrictions)
			})
		}, want: []string{CodePolicyNotInstalled}, detail: ".restrictions"},
		{name: "filevault profile missing", platforms: []Platform{PlatformMacOS}, mutate: func(p *Policy, pos *Posture) {
			pos.InstalledProfiles.Value = slices.DeleteFunc(pos.InstalledProfiles.Value, func(ip InstalledProfile) bool {
				return ip.Identifier == ProfileIdentifier(p.Name, ProfileFileVault)
			})
		}, want: []string{CodePolicyNotInstalled}, detail: ".filevault"},
		{name: "another policy's profiles", platforms: mobile, mutate: func(p *Policy, pos *Posture) { p.Name = "other" },
			want: []string{CodePolicyNotInstalled, CodePolicyNotInstalled, CodePolicyNotInstalled}},
		{name: "restrictions in force", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{"allowScreenShot": false, "allowRemoteScreenObservation": false,
				"allowCloudBackup": false, "allowCloudDocumentSync": false, "forceEncryptedBackup": true,
				"allowLockScreenNotificationsView": false}, ProvenanceMDM, pos.ReportedAt)
		}},
		{name: "screenshots allowed", platforms: apple, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{"allowRemoteScreenObservation": false, "allowCloudBackup": false,
				"allowCloudDocumentSync": false, "allowCloudDesktopAndDocuments": false, "forceEncryptedBackup": true,
				"allowLockScreenNotificationsView": false}, ProvenanceMDM, pos.ReportedAt)
		}, want: []string{CodeScreenshotsAllowed}, detail: "allowScreenShot"},
		{name: "cloud backup allowed and backups unencrypted", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{"allowScreenShot": false, "allowRemoteScreenObservation": false,
				"allowCloudBackup": true, "allowCloudDocumentSync": false, "allowLockScreenNotificationsView": false},
				ProvenanceMDM, pos.ReportedAt)
		}, want: []string{CodeCloudBackupAllowed, CodeCloudBackupAllowed}, detail: "forceEncryptedBackup"},
		{name: "lock screen notifications view allowed", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{"allowScreenShot": false, "allowRemoteScreenObservation": false,
				"allowCloudBackup": false, "allowCloudDocumentSync": false, "forceEncryptedBackup": true},
				ProvenanceMDM, pos.ReportedAt)
		}, want: []string{CodeLockScreenPreviews}, detail: "allowLockScreenNotificationsView"},
		{name: "restrictions answer stale", platforms: mobile, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{}, ProvenanceMDM, ago(time.Hour))
		}, want: []string{CodeClaimStale}, detail: "restrictions"},
		{name: "unsupervised", platforms: mobile, mutate: func(_ *Policy, pos *Posture) { pos.Supervised.Value = false },
			want: []string{CodeUnsupervisedSetting, CodeUnsupervisedSetting}, detail: "com.apple.notificationsettings"},
		{name: "unsupervised does not expect the notifications profile", platforms: mobile, mutate: func(p *Policy, pos *Posture) {
			pos.Supervised.Value = false
			pos.InstalledProfiles.Value = slices.DeleteFunc(pos.InstalledProfiles.Value, func(ip InstalledProfile) bool {
				return ip.Identifier == ProfileIdentifier(p.Name, ProfileNotifications)
			})
		}, want: []string{CodeUnsupervisedSetting, CodeUnsupervisedSetting}, detail: "allowCloudDocumentSync"},
		{name: "supervision unknown", platforms: mobile, mutate: func(_ *Policy, pos *Posture) { pos.Supervised = nil },
			want: []string{CodeClaimUnknown}, detail: "supervised"},
		{name: "supervision irrelevant on macos", platforms: []Platform{PlatformMacOS}, mutate: func(_ *Policy, pos *Posture) {
			pos.Supervised = Observe(false, ProvenanceMDM, pos.ReportedAt)
		}},
		{name: "supervision irrelevant without supervised settings", platforms: mobile, mutate: func(p *Policy, pos *Posture) {
			p.Backup.CloudDocumentSyncAllowed = nil
			p.Notifications.Apps = nil
			pos.Supervised = nil
		}},
		{name: "apple restrictions do not apply to agent platforms", platforms: agentOnly, mutate: func(_ *Policy, pos *Posture) {
			pos.Restrictions = Observe(map[string]bool{"allowScreenShot": true}, ProvenanceAgent, pos.ReportedAt)
		}},

		// Several problems at once are all reported.
		{name: "many", platforms: []Platform{PlatformWindows}, mutate: func(_ *Policy, pos *Posture) {
			pos.DiskEncrypted.Value = false
			pos.PasscodePresent.Value = false
			pos.SecureBoot.Value = false
			pos.OS.Value.Version = "10.0.19045"
		}, want: []string{CodeEncryptionOff, CodePasscodeMissing, CodeSecureBootOff, CodeOSTooOld}},
	})
}

func TestEvaluateKioskAndBYOD(t *testing.T) {
	runEvalCases(t, "kiosk.yaml", []evalCase{
		{name: "kiosk compliant", platforms: []Platform{PlatformIPadOS}},
		{name: "kiosk desktop has no os minimum", platforms: []Platform{PlatformWindows}, mutate: func(_ *Policy, pos *Posture) {
			pos.OS.Value.Version = "6.1"
			pos.ScreenLockTimeout.Value = Duration(2 * time.Minute)
		}},
		{name: "kiosk unsupervised", platforms: []Platform{PlatformIPadOS}, mutate: func(_ *Policy, pos *Posture) { pos.Supervised.Value = false },
			want: []string{CodeUnsupervisedSetting, CodeUnsupervisedSetting}},
		{name: "kiosk 2-minute lock", platforms: []Platform{PlatformLinux}, want: []string{CodeScreenLockTimeoutTooLong}},
	})
	runEvalCases(t, "byod.yaml", []evalCase{
		{name: "byod compliant", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.Supervised = nil }},
		{name: "byod report age 1h", platforms: every, mutate: func(_ *Policy, pos *Posture) { pos.ReportedAt = t0.Add(-50 * time.Minute) }},
	})
}

func TestEvaluateNoPolicy(t *testing.T) {
	v := Evaluate(nil, compliantPosture(&Policy{Name: "x"}, PlatformIOS, t0), nil, t0)
	if v.Compliant || codesOf(v)[0] != CodeNoPolicy || v.Allowed(t0) {
		t.Fatalf("verdict %+v", v)
	}
	p := mustParseFixture(t, "hipaa-texting.yaml")
	v = Evaluate(p, nil, nil, t0)
	if v.Compliant || codesOf(v)[0] != CodeNoReport || v.Allowed(t0) {
		t.Fatalf("verdict %+v", v)
	}
}

func TestEvaluateEmptyPolicy(t *testing.T) {
	p, err := Parse([]byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range every {
		pos := &Posture{Platform: pl, ReportedAt: t0.Add(-time.Hour)}
		if v := Evaluate(p, pos, nil, t0); !v.Compliant {
			t.Errorf("%s: empty policy, fresh report: %+v", pl, v)
		}
		pos.ReportedAt = t0.Add(-25 * time.Hour) // default max age is 24h
		if v := Evaluate(p, pos, nil, t0); v.Compliant || codesOf(v)[0] != CodeReportStale {
			t.Errorf("%s: empty policy, day-old report: %+v", pl, v)
		}
	}
}

func TestGraceTransitions(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml") // 24h grace, encryption_off denies at once
	const good, bad = false, true
	at := func(old bool, now time.Time) *Posture {
		pos := compliantPosture(p, PlatformWindows, now)
		if old {
			pos.OS.Value.Version = "10.0.19045"
		}
		return pos
	}

	// Compliant: no run.
	v0 := Evaluate(p, at(good, t0), nil, t0)
	if !v0.Compliant || !v0.NoncompliantSince.IsZero() || !v0.GraceUntil.IsZero() {
		t.Fatalf("v0 %+v", v0)
	}
	// A run begins.
	t1 := t0.Add(time.Hour)
	v1 := Evaluate(p, at(bad, t1), &v0, t1)
	if v1.Compliant || !v1.NoncompliantSince.Equal(t1) || !v1.GraceUntil.Equal(t1.Add(24*time.Hour)) || !v1.Allowed(t1) || !v1.InGrace(t1) {
		t.Fatalf("v1 %+v", v1)
	}
	// The run continues: start carried over.
	t2 := t1.Add(10 * time.Hour)
	v2 := Evaluate(p, at(bad, t2), &v1, t2)
	if !v2.NoncompliantSince.Equal(t1) || !v2.GraceUntil.Equal(t1.Add(24*time.Hour)) || !v2.Allowed(t2) {
		t.Fatalf("v2 %+v", v2)
	}
	// Grace runs out.
	t3 := t1.Add(25 * time.Hour)
	v3 := Evaluate(p, at(bad, t3), &v2, t3)
	if !v3.NoncompliantSince.Equal(t1) || v3.Allowed(t3) || v3.InGrace(t3) {
		t.Fatalf("v3 %+v", v3)
	}
	// Compliant again: cleared.
	t4 := t3.Add(time.Hour)
	v4 := Evaluate(p, at(good, t4), &v3, t4)
	if !v4.Compliant || !v4.NoncompliantSince.IsZero() || !v4.GraceUntil.IsZero() {
		t.Fatalf("v4 %+v", v4)
	}
	// A new run starts afresh.
	t5 := t4.Add(time.Hour)
	v5 := Evaluate(p, at(bad, t5), &v4, t5)
	if !v5.NoncompliantSince.Equal(t5) || !v5.Allowed(t5) {
		t.Fatalf("v5 %+v", v5)
	}
	// A reason that denies at once (policy no_grace_for) ends grace mid-run...
	t6 := t5.Add(time.Hour)
	worse := at(bad, t6)
	worse.DiskEncrypted.Value = false
	v6 := Evaluate(p, worse, &v5, t6)
	if !v6.NoncompliantSince.Equal(t5) || !v6.GraceUntil.Equal(t5) || v6.Allowed(t6) {
		t.Fatalf("v6 %+v", v6)
	}
	// ...and grace resumes from the run's start when only graceable reasons remain.
	t7 := t6.Add(time.Hour)
	v7 := Evaluate(p, at(bad, t7), &v6, t7)
	if !v7.NoncompliantSince.Equal(t5) || !v7.GraceUntil.Equal(t5.Add(24*time.Hour)) || !v7.Allowed(t7) {
		t.Fatalf("v7 %+v", v7)
	}
	// A previous start in the future (clock skew) is not trusted.
	future := Verdict{NoncompliantSince: t7.Add(time.Hour)}
	v8 := Evaluate(p, at(bad, t7), &future, t7)
	if !v8.NoncompliantSince.Equal(t7) {
		t.Fatalf("v8 %+v", v8)
	}
}

func TestGraceNeverForIntrinsicReasons(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	for _, tc := range []struct {
		name   string
		pl     Platform
		mutate func(*Posture)
	}{
		{"jailbroken", PlatformIOS, func(pos *Posture) { pos.Jailbroken = Observe(true, ProvenanceAttested, pos.ReportedAt) }},
		{"agent tampered", PlatformLinux, func(pos *Posture) { pos.AgentTampered.Value = true }},
	} {
		pos := compliantPosture(p, tc.pl, t0)
		tc.mutate(pos)
		v := Evaluate(p, pos, nil, t0)
		if v.Compliant || v.Allowed(t0) || !v.GraceUntil.Equal(v.NoncompliantSince) {
			t.Errorf("%s: %+v", tc.name, v)
		}
	}
	v := Evaluate(p, nil, nil, t0)
	if v.Allowed(t0) || !v.GraceUntil.Equal(t0) {
		t.Errorf("no report: %+v", v)
	}
	// Zero grace denies at once.
	p.Grace = nil
	pos := compliantPosture(p, PlatformIOS, t0)
	pos.PasscodePresent.Value = false
	if v := Evaluate(p, pos, nil, t0); v.Allowed(t0) {
		t.Errorf("zero grace: %+v", v)
	}
}

func TestEvaluateDeterministicAndPure(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	before := string(p.Canonical())
	pos := compliantPosture(p, PlatformMacOS, t0)
	pos.SIPEnabled.Value = false
	posJSON, _ := json.Marshal(pos)
	prev := &Verdict{NoncompliantSince: t0.Add(-time.Hour)}
	a := Evaluate(p, pos, prev, t0)
	b := Evaluate(p, pos, prev, t0)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("verdicts differ:\n%+v\n%+v", a, b)
	}
	after, _ := json.Marshal(pos)
	if string(after) != string(posJSON) || string(p.Canonical()) != before || !prev.NoncompliantSince.Equal(t0.Add(-time.Hour)) {
		t.Fatal("Evaluate modified its inputs")
	}
}

func TestEvaluateCompliantDoesNotAllocate(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	for _, pl := range every {
		pos := compliantPosture(p, pl, t0)
		if n := testing.AllocsPerRun(50, func() { Evaluate(p, pos, nil, t0) }); n != 0 {
			t.Errorf("%s: compliant evaluation allocates %.0f times", pl, n)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustParseFixture(b, "hipaa-texting.yaml")
	b.Run("compliant", func(b *testing.B) {
		poss := make([]*Posture, len(every))
		for i, pl := range every {
			poss[i] = compliantPosture(p, pl, t0)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if v := Evaluate(p, poss[i%len(poss)], nil, t0); !v.Compliant {
				b.Fatal("not compliant")
			}
		}
	})
	b.Run("noncompliant", func(b *testing.B) {
		pos := compliantPosture(p, PlatformIOS, t0)
		pos.PasscodePresent.Value = false
		pos.OS.Value.Version = "16.0"
		prev := &Verdict{NoncompliantSince: t0.Add(-time.Hour)}
		b.ReportAllocs()
		for b.Loop() {
			if v := Evaluate(p, pos, prev, t0); v.Compliant {
				b.Fatal("compliant")
			}
		}
	})
}
