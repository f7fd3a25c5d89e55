package policies

import (
	"strings"
	"time"
)

// Reason codes. They are stable: programs (the access API, the messaging backend) act on them.
const (
	CodeNoPolicy                 = "no_policy"        // no policy to evaluate against
	CodeNoReport                 = "no_report"        // the device never reported
	CodeReportStale              = "report_stale"     // newest report older than reporting.max_age
	CodePlatformUnknown          = "platform_unknown" // posture names no platform Hale knows
	CodeClaimUnknown             = "claim_unknown"    // a fact a rule needs was not reported; detail names it
	CodeClaimStale               = "claim_stale"      // a fact a rule needs is older than reporting.max_age
	CodePasscodeMissing          = "passcode_missing"
	CodePasscodeNoncompliant     = "passcode_noncompliant"
	CodeScreenLockOff            = "screen_lock_off"
	CodeScreenLockTimeoutTooLong = "screen_lock_timeout_too_long"
	CodeEncryptionOff            = "encryption_off"
	CodeSwapUnencrypted          = "swap_unencrypted"
	CodeOSTooOld                 = "os_too_old"
	CodeOSUnknown                = "os_unknown"
	CodeOSUnsupported            = "os_unsupported" // Linux distribution the policy does not list
	CodeJailbroken               = "jailbroken"
	CodeSIPDisabled              = "sip_disabled"
	CodeSecureBootOff            = "secure_boot_off"
	CodeAgentTampered            = "agent_tampered"
	CodeScreenshotsAllowed       = "screenshots_allowed"
	CodeCloudBackupAllowed       = "cloud_backup_allowed"
	CodeLockScreenPreviews       = "lock_screen_previews"
	CodePolicyNotInstalled       = "policy_not_installed"
	CodeUnsupervisedSetting      = "unsupervised_setting"
	CodeAppNotAttested           = "app_not_attested"
	// CodeDataSharingAllowed: the device reports a data_sharing restriction not in force;
	// detail names the Apple key.
	CodeDataSharingAllowed = "data_sharing_allowed"
	// CodeDeclarationFailed: the device reported one of the policy's declarations invalid or
	// not active (declarative management); the detail names it and the device's error codes.
	CodeDeclarationFailed = "declaration_failed"
	CodePatchTooOld       = "security_patch_too_old"
)

// ReasonCodes lists every reason code Evaluate can produce.
var ReasonCodes = []string{
	CodeNoPolicy, CodeNoReport, CodeReportStale, CodePlatformUnknown, CodeClaimUnknown,
	CodeClaimStale, CodePasscodeMissing, CodePasscodeNoncompliant, CodeScreenLockOff,
	CodeScreenLockTimeoutTooLong, CodeEncryptionOff, CodeSwapUnencrypted, CodeOSTooOld,
	CodeOSUnknown, CodeOSUnsupported, CodeJailbroken, CodeSIPDisabled, CodeSecureBootOff,
	CodeAgentTampered, CodeScreenshotsAllowed, CodeCloudBackupAllowed, CodeLockScreenPreviews,
	CodePolicyNotInstalled, CodeUnsupervisedSetting, CodeAppNotAttested, CodeDataSharingAllowed, CodeDeclarationFailed, CodePatchTooOld,
}

// noGrace reports whether a reason denies at once whatever the grace policy: a device that
// never reported, is jailbroken or has a tampered agent is not trusted for a moment.
func noGrace(code string) bool {
	return code == CodeNoReport || code == CodeJailbroken || code == CodeAgentTampered
}

// Claim names used in claim_unknown and claim_stale details; they match the posture JSON keys.
const (
	claimOS                = "os"
	claimSupervised        = "supervised"
	claimDiskEncrypted     = "disk_encrypted"
	claimSwapEncrypted     = "swap_encrypted"
	claimPasscodePresent   = "passcode_present"
	claimPasscodeCompliant = "passcode_compliant"
	claimPasswordRules     = "password_rules"
	claimScreenLockEnabled = "screen_lock_enabled"
	claimScreenLockTimeout = "screen_lock_timeout"
	claimInstalledProfiles = "installed_profiles"
	claimRestrictions      = "restrictions"
	claimDeclarations      = "declarations"
	claimOSUpdate          = "os_update"
	claimJailbroken        = "jailbroken"
	claimSIP               = "sip_enabled"
	claimSecureBoot        = "secure_boot"
	claimAgentTampered     = "agent_tampered"
	claimAppAttested       = "app_attested"
	claimScreenCaptured    = "screen_captured"
	claimNoncompliance     = "noncompliance"
	// Reported but not judged by any rule yet; sources list them.
	claimFirewallEnabled = "firewall_enabled"
	claimGatekeeper      = "gatekeeper_enabled"
	claimKernelLockdown  = "kernel_lockdown"
	claimKernelTainted   = "kernel_tainted"
	claimPendingSecurity = "pending_security_updates"
	claimRebootRequired  = "reboot_required"
)

// Evaluate judges a posture against a policy at now. It is pure and deterministic: the same
// inputs give the same verdict. prev is the device's previous verdict (nil if none); it carries
// the start of a run of noncompliance forward so that grace is measured from when the run
// began, and the run ends when the device is compliant again.
//
// Rules fail closed: a fact a rule needs that is unknown or stale makes the device
// noncompliant. Which rules apply depends on the platform; see the rule functions.
// A compliant evaluation does not allocate.
func Evaluate(p *Policy, pos *Posture, prev *Verdict, now time.Time) Verdict {
	now = now.UTC()
	v := Verdict{EvaluatedAt: now}
	e := evaluation{p: p, pos: pos, now: now}
	switch {
	case p == nil:
		e.add(CodeNoPolicy, "no policy is assigned to the device")
	case pos == nil || pos.ReportedAt.IsZero():
		v.PolicyName, v.PolicyVersion = p.Name, p.Version
		e.add(CodeNoReport, "the device has not reported its posture")
	default:
		v.PolicyName, v.PolicyVersion = p.Name, p.Version
		e.run()
	}
	v.Reasons = e.reasons
	v.Compliant = len(v.Reasons) == 0
	if v.Compliant {
		v.Reasons = []Reason{}
		return v
	}
	v.NoncompliantSince = now
	if prev != nil && !prev.Compliant && !prev.NoncompliantSince.IsZero() && !prev.NoncompliantSince.After(now) {
		v.NoncompliantSince = prev.NoncompliantSince.UTC()
	}
	v.GraceUntil = v.NoncompliantSince
	if p != nil && !e.noGrace(p.Grace) {
		v.GraceUntil = v.NoncompliantSince.Add(p.GracePeriod())
	}
	return v
}

type evaluation struct {
	p       *Policy
	pos     *Posture
	now     time.Time
	maxAge  time.Duration
	stale   bool // the whole report is stale; claims are not judged stale one by one
	reasons []Reason
}

func (e *evaluation) add(code, detail string) {
	e.reasons = append(e.reasons, Reason{Code: code, Detail: detail})
}

func (e *evaluation) noGrace(g *GracePolicy) bool {
	for _, r := range e.reasons {
		if noGrace(r.Code) {
			return true
		}
		if g != nil {
			for _, c := range g.NoGraceFor {
				if c == r.Code {
					return true
				}
			}
		}
	}
	return false
}

// fresh returns a claim's value if it is known and fresh, and otherwise records why not.
func fresh[T any](e *evaluation, c *Claim[T], name string) (T, bool) {
	if c == nil {
		var zero T
		e.add(CodeClaimUnknown, name)
		return zero, false
	}
	if !e.stale {
		at := c.ObservedAt
		if at.IsZero() {
			at = e.pos.ReportedAt
		}
		if e.now.Sub(at) > e.maxAge {
			e.add(CodeClaimStale, name)
			return c.Value, false
		}
	}
	return c.Value, true
}

func (e *evaluation) run() {
	p, pos := e.p, e.pos
	e.maxAge = p.ReportMaxAge()
	if platformBit(pos.Platform) == 0 {
		e.add(CodePlatformUnknown, "posture does not name a platform Hale knows")
		return
	}
	if e.now.Sub(pos.ReportedAt) > e.maxAge {
		e.stale = true
		e.add(CodeReportStale, "the newest report is older than the policy's reporting.max_age")
	}
	e.integrity()
	e.os()
	e.osPatch()
	e.passcode()
	e.encryption()
	if appleAll.has(pos.Platform) {
		e.apple()
	}
	if pos.Platform == PlatformAndroid {
		e.android()
	}
}

// integrity: jailbreak on the evidence the policy names, SIP on macOS, secure boot and agent
// tampering on desktops (and anywhere tampering is reported).
func (e *evaluation) integrity() {
	ip, pos := e.p.Integrity, e.pos
	if ip == nil {
		return
	}
	pl := pos.Platform
	if ip.BlockJailbroken {
		e.jailbreak(ip.JailbreakEvidence)
	}
	if ip.RequireSIP && pl == PlatformMacOS {
		if on, ok := fresh(e, pos.SIPEnabled, claimSIP); ok && !on {
			e.add(CodeSIPDisabled, "System Integrity Protection is disabled")
		}
	}
	if ip.RequireSecureBoot && desktops.has(pl) {
		if on, ok := fresh(e, pos.SecureBoot, claimSecureBoot); ok && !on {
			e.add(CodeSecureBootOff, "secure boot is off")
		}
	}
	if ip.RequireAppAttestation && appleMobile.has(pl) {
		// Only Apple's or Google's word counts: an "attested" claim the app made up itself
		// cannot reach the posture (the server stamps provenance), but check anyway.
		if attested, known := fresh(e, pos.AppAttested, claimAppAttested); known && (!attested || pos.AppAttested.Source != ProvenanceAttested) {
			e.add(CodeAppNotAttested, "no attested instance of the messaging app reports from this device")
		}
	}
	if ip.BlockAgentTampering && (desktops.has(pl) || pos.AgentTampered != nil) {
		if t, ok := fresh(e, pos.AgentTampered, claimAgentTampered); ok && t {
			e.add(CodeAgentTampered, "the agent reports that it was tampered with")
		}
	}
}

// jailbreak: with evidence required, on every platform, a fresh report that the device is not
// jailbroken (unknown or stale fails closed). Otherwise only a report that it is jailbroken
// denies, however old: no later report said otherwise, and a jailbreak does not heal itself.
func (e *evaluation) jailbreak(evidence JailbreakEvidence) {
	const detail = "the device is jailbroken or rooted"
	if evidence == JailbreakRequired {
		if jb, ok := fresh(e, e.pos.Jailbroken, claimJailbroken); ok && jb {
			e.add(CodeJailbroken, detail)
		}
		return
	}
	if c := e.pos.Jailbroken; c != nil && c.Value {
		e.add(CodeJailbroken, detail)
	}
}

// os: the minimum version for the platform; on Linux for the distribution.
func (e *evaluation) os() {
	if e.p.OS == nil {
		return
	}
	pl := e.pos.Platform
	distro := ""
	if e.pos.OS != nil {
		distro = e.pos.OS.Value.Distribution
	}
	min, enforced, listed := e.p.OS.Minimum(pl, distro)
	if !enforced && listed {
		return
	}
	if e.pos.OS == nil {
		e.add(CodeOSUnknown, "the device did not report its OS version")
		return
	}
	info, ok := fresh(e, e.pos.OS, claimOS)
	if !ok {
		return
	}
	if !listed {
		if distro == "" {
			e.add(CodeOSUnknown, "the device did not report its Linux distribution")
		} else {
			e.add(CodeOSUnsupported, "the policy sets no minimum version for Linux distribution "+distro)
		}
		return
	}
	c, err := compareOS(pl, info, min)
	switch {
	case err != nil:
		e.add(CodeOSUnknown, "the reported OS version is not a version: "+clip(info.Version))
	case c < 0:
		e.add(CodeOSTooOld, "OS version "+clip(info.Version)+" is older than the minimum "+min)
	}
}

// osPatch: Android's security patch level against os.android_security_patch. ISO dates compare
// as strings; a level that is not a date fails closed.
func (e *evaluation) osPatch() {
	if e.p.OS == nil || e.p.OS.AndroidSecurityPatch == "" || e.pos.Platform != PlatformAndroid {
		return
	}
	info, ok := fresh(e, e.pos.OS, claimOS)
	if !ok {
		return
	}
	switch {
	case !validPatchLevel(info.SecurityPatch):
		e.add(CodeOSUnknown, "the device did not report a security patch level")
	case info.SecurityPatch < e.p.OS.AndroidSecurityPatch:
		e.add(CodePatchTooOld, "security patch level "+info.SecurityPatch+" is older than "+e.p.OS.AndroidSecurityPatch)
	}
}

// compareOS compares a device's OS with a minimum. Windows keeps the update revision (UBR) in
// the build ("22631.3447" for version "10.0.22631"), so a four-part minimum is compared with
// version and UBR together.
func compareOS(pl Platform, info OSInfo, min string) (int, error) {
	if pl != PlatformWindows || strings.Count(min, ".") != 3 || strings.Count(versionCore(info.Version), ".") != 2 {
		return CompareVersions(info.Version, min)
	}
	cut := strings.LastIndexByte(min, '.')
	if c, err := CompareVersions(info.Version, min[:cut]); err != nil || c != 0 {
		return c, err
	}
	build, ubr, found := strings.Cut(info.Build, ".")
	_, third, _ := strings.Cut(versionCore(info.Version), ".")
	_, third, _ = strings.Cut(third, ".")
	if !found || build != third {
		return -1, nil // no revision reported: it cannot be shown to meet a revision minimum
	}
	return CompareVersions(ubr, min[cut+1:])
}

// passcode: on every platform a passcode must exist and, when the policy constrains it, the OS
// must call it compliant. Desktops must also lock the screen, within max_inactivity_minutes.
// On macOS an installed Hale passcode profile stands in for missing screen-lock facts, because
// the OS enforces it.
func (e *evaluation) passcode() {
	pc, pos := e.p.Passcode, e.pos
	if pc == nil || !pc.needsPasscode() {
		return
	}
	if present, ok := fresh(e, pos.PasscodePresent, claimPasscodePresent); ok {
		if !present {
			e.add(CodePasscodeMissing, "no passcode or password is set")
		} else if pc.hasComplexity() {
			if pos.PasscodeCompliant == nil && pos.PasswordRules != nil {
				if rules, ok := fresh(e, pos.PasswordRules, claimPasswordRules); ok && !rules.Satisfy(pc) {
					e.add(CodePasscodeNoncompliant, "the OS's password rules are weaker than the policy")
				}
			} else if compliant, ok := fresh(e, pos.PasscodeCompliant, claimPasscodeCompliant); ok && !compliant {
				e.add(CodePasscodeNoncompliant, "the passcode does not meet the policy")
			}
		}
	}
	if !desktops.has(pos.Platform) {
		return
	}
	if pos.Platform == PlatformMacOS && pos.ScreenLockEnabled == nil && e.profileInstalled(ProfilePasscode) {
		return
	}
	enabled, ok := fresh(e, pos.ScreenLockEnabled, claimScreenLockEnabled)
	if !ok {
		return
	}
	if !enabled {
		e.add(CodeScreenLockOff, "the screen does not lock")
		return
	}
	if pc.MaxInactivityMinutes <= 0 {
		return
	}
	if pos.Platform == PlatformMacOS && pos.ScreenLockTimeout == nil && e.profileInstalled(ProfilePasscode) {
		return
	}
	timeout, ok := fresh(e, pos.ScreenLockTimeout, claimScreenLockTimeout)
	if ok && (timeout <= 0 || time.Duration(timeout) > time.Duration(pc.MaxInactivityMinutes)*time.Minute) {
		e.add(CodeScreenLockTimeoutTooLong, "the screen locks later than max_inactivity_minutes allows")
	}
}

// profileInstalled reports, without recording anything, whether a fresh profile list shows
// the policy's profile of the given kind.
func (e *evaluation) profileInstalled(kind string) bool {
	c := e.pos.InstalledProfiles
	if c == nil {
		return false
	}
	at := c.ObservedAt
	if at.IsZero() {
		at = e.pos.ReportedAt
	}
	if e.stale || e.now.Sub(at) > e.maxAge {
		return false
	}
	for _, ip := range c.Value {
		if isProfileIdentifier(ip.Identifier, e.p.Name, kind) {
			return true
		}
	}
	return false
}

// encryption: the system volume on every platform; swap too on Linux.
func (e *evaluation) encryption() {
	if e.p.Encryption == nil || !e.p.Encryption.Required {
		return
	}
	if on, ok := fresh(e, e.pos.DiskEncrypted, claimDiskEncrypted); ok && !on {
		e.add(CodeEncryptionOff, "the system disk is not encrypted")
	}
	if e.pos.Platform == PlatformLinux {
		if on, ok := fresh(e, e.pos.SwapEncrypted, claimSwapEncrypted); ok && !on {
			e.add(CodeSwapUnencrypted, "swap is not encrypted")
		}
	}
}

// apple: settings delivered as configuration profiles. Supervised-only settings on an
// unsupervised device are reported (unsupervised_setting); every profile the policy renders
// for the platform must be installed (policy_not_installed); and where the device reports its
// effective restrictions, each restrictive setting must be in force.
func (e *evaluation) apple() {
	p, pos := e.p, e.pos
	pl := pos.Platform
	needSupervision := false
	for i := range restrictions {
		r := &restrictions[i]
		if _, set := r.value(p); set && r.Platforms.has(pl) && r.Supervised.has(pl) {
			needSupervision = true
		}
	}
	notify := p.Notifications != nil && len(p.Notifications.Apps) > 0
	if notify && notificationsSupervised.has(pl) {
		needSupervision = true
	}
	supervised := true
	if needSupervision {
		sv, ok := fresh(e, pos.Supervised, claimSupervised)
		supervised = ok && sv
		if ok && !sv {
			for i := range restrictions {
				r := &restrictions[i]
				if _, set := r.value(p); set && r.Platforms.has(pl) && r.Supervised.has(pl) {
					e.add(CodeUnsupervisedSetting, r.Key)
				}
			}
			if notify && notificationsSupervised.has(pl) {
				e.add(CodeUnsupervisedSetting, PayloadTypeNotifications)
			}
		}
	}

	k := expectedAppleProfiles(p, pl, supervised)
	// On declarative management the declarations' status is the evidence (and a profile list
	// asked once at enrollment would go stale); otherwise the profile list is.
	var decls []DeclarationState
	declOK := false
	if pos.Declarations != nil {
		decls, declOK = fresh(e, pos.Declarations, claimDeclarations)
		if declOK {
			e.declarationErrors(decls)
		}
	}
	if k.passcode || k.restrictions || k.fileVault || k.notifications {
		var installed []InstalledProfile
		listOK := false
		if !declOK {
			installed, listOK = fresh(e, pos.InstalledProfiles, claimInstalledProfiles)
		}
		if listOK || declOK {
			e.requireProfile(installed, decls, k.passcode, ProfilePasscode)
			e.requireProfile(installed, decls, k.restrictions, ProfileRestrictions)
			e.requireProfile(installed, decls, k.fileVault, ProfileFileVault)
			e.requireProfile(installed, decls, k.notifications, ProfileNotifications)
		}
	}

	if pos.Restrictions == nil || !k.restrictions {
		return // the installed restrictions profile is the evidence
	}
	eff, ok := fresh(e, pos.Restrictions, claimRestrictions)
	if !ok {
		return
	}
	for i := range restrictions {
		r := &restrictions[i]
		want, set := r.value(p)
		if !set || want != r.restrictive || !r.Platforms.has(pl) || (r.Supervised.has(pl) && !supervised) {
			continue
		}
		got, present := eff[r.Key]
		if !present {
			got = !r.restrictive // Apple's default is the permissive value
		}
		if got != want {
			e.add(r.Code, r.Key)
		}
	}
}

func (e *evaluation) requireProfile(installed []InstalledProfile, decls []DeclarationState, want bool, kind string) {
	if !want {
		return
	}
	for _, ip := range installed {
		if isProfileIdentifier(ip.Identifier, e.p.Name, kind) {
			return
		}
	}
	if len(decls) > 0 {
		dk := LegacyDeclarationKind(kind)
		if kind == ProfilePasscode {
			dk = DeclarationPasscode
		}
		id := DeclarationIdentifier(e.p.Name, dk)
		for _, d := range decls {
			if d.Identifier == id && !d.Failed() {
				return
			}
		}
	}
	e.add(CodePolicyNotInstalled, ProfileIdentifier(e.p.Name, kind))
}

// declarationErrors reports every declaration of the policy's that the device refused or did
// not activate.
func (e *evaluation) declarationErrors(decls []DeclarationState) {
	prefix := DeclarationIdentifierPrefix + e.p.Name + "."
	for _, d := range decls {
		if !strings.HasPrefix(d.Identifier, prefix) || !d.Failed() {
			continue
		}
		detail := d.Identifier + ": valid=" + d.Valid
		if !d.Active {
			detail += ", not active"
		}
		if len(d.Reasons) > 0 {
			detail += " (" + strings.Join(d.Reasons, ", ") + ")"
		}
		e.add(CodeDeclarationFailed, detail)
	}
}
