package policies

// Enrollments: how a device came under management, as POST /api/v1/enrollments names it. A
// device has one; which sources report on it follows from it.
const (
	EnrollmentApple = "apple" // Apple MDM: iOS, iPadOS and macOS
	EnrollmentAgent = "agent" // the mdmagent: Linux, macOS and Windows
	// EnrollmentAndroid is the Android Management API: company phones (device owner) and
	// personal ones (a work profile).
	EnrollmentAndroid = "android"
)

// Source is one way Hale learns facts about devices: which posture claims it reports, on which
// platforms, for devices of which enrollment. Sources are data so that the satisfiability
// check (CheckObservable) follows what Hale can see, and a new source is one more entry.
type Source struct {
	// Name identifies the source in reports ("apple-mdm").
	Name string `json:"name"`
	// Enrollment is the enrollment whose devices the source reports on. Empty means devices of
	// any enrollment on the source's platforms, such as the messaging app's attestation; such a
	// source adds facts but no platforms to check.
	Enrollment string `json:"enrollment,omitempty"`
	// Provenance is the provenance its claims carry.
	Provenance Provenance `json:"provenance"`
	// What says where the facts come from, for people reading a report.
	What string `json:"what"`
	// Claims lists, per platform, the posture claims (their JSON keys, such as
	// "passcode_present") the source reports there.
	Claims map[Platform][]string `json:"claims"`
}

// reports reports whether s reports claim on pl.
func (s *Source) reports(pl Platform, claim string) bool {
	for _, c := range s.Claims[pl] {
		if c == claim {
			return true
		}
	}
	return false
}

// appleMobileMDM is what Apple MDM tells Hale about an iPhone or iPad: DeviceInformation's
// OSVersion and IsSupervised, SecurityInfo's PasscodePresent, PasscodeCompliant(WithProfiles)
// and HardwareEncryptionCaps (data protection), the ProfileList, and the restrictions in force
// (the Restrictions command; on macOS it answers an empty dictionary). Nothing in them says
// whether the device is jailbroken.
var appleMobileMDM = []string{claimOS, claimSupervised, claimPasscodePresent, claimPasscodeCompliant,
	claimDiskEncrypted, claimInstalledProfiles, claimRestrictions}

// MessagingApp is the organisation's messaging app linking Hale's client (mobile/): what it
// sees under a valid App Attest assertion (iOS LAContext for the passcode, its jailbreak
// heuristics, UIScreen.isCaptured) with provenance app, and its registration's attestation with
// provenance attested. It reports on a device of any enrollment it is bound to, so it adds
// facts but no platforms. CheckObservable counts it for a policy that requires it
// (integrity.require_app_attestation): only then is every device held to running the app.
var MessagingApp = Source{
	Name: "messaging-app", Provenance: ProvenanceApp,
	What: "the messaging app's attested reports (App Attest)",
	Claims: map[Platform][]string{
		PlatformIOS:    {claimAppAttested, claimPasscodePresent, claimJailbroken, claimScreenCaptured},
		PlatformIPadOS: {claimAppAttested, claimPasscodePresent, claimJailbroken, claimScreenCaptured},
	},
}

// appleMobileDDM is what declarative management status reports tell Hale about an iPhone or iPad.
var appleMobileDDM = []string{claimOS, claimPasscodePresent, claimPasscodeCompliant, claimDiskEncrypted, claimDeclarations, claimOSUpdate}

// Sources are the sources Hale has today, as the server maps Apple command results
// (mdmserver's applyAppleResult) and as the agent's collectors report (agent/collect). Apple
// DDM status reports and the Android Management API each become one more entry when Hale reads
// them; the messaging app is MessagingApp, counted where a policy requires it.
var Sources = []Source{
	{
		Name: "apple-mdm", Enrollment: EnrollmentApple, Provenance: ProvenanceMDM,
		What: "Apple MDM's DeviceInformation, SecurityInfo, ProfileList and Restrictions answers",
		Claims: map[Platform][]string{
			PlatformIOS:    appleMobileMDM,
			PlatformIPadOS: appleMobileMDM,
			// SecurityInfo on macOS has FileVault, SIP and the firewall, but no passcode keys
			// (Apple documents those for iOS only), and Hale does not map its SecureBoot.
			PlatformMacOS: {claimOS, claimSupervised, claimDiskEncrypted, claimSIP, claimFirewallEnabled,
				claimInstalledProfiles},
		},
	},
	{
		// Status reports of devices on declarative management (mdmserver/ddm): on iOS and
		// iPadOS passcode.is-present is also data protection, which every device that runs
		// declarative management (iOS 15 and later) has in hardware.
		Name: "apple-ddm", Enrollment: EnrollmentApple, Provenance: ProvenanceMDM,
		What: "Apple declarative management status reports",
		Claims: map[Platform][]string{
			PlatformIOS:    appleMobileDDM,
			PlatformIPadOS: appleMobileDDM,
			PlatformMacOS:  {claimOS, claimDiskEncrypted, claimDeclarations, claimOSUpdate},
		},
	},
	{
		Name: "mdmagent", Enrollment: EnrollmentAgent, Provenance: ProvenanceAgent,
		What: "the agent's collectors",
		Claims: map[Platform][]string{
			PlatformLinux: {claimOS, claimDiskEncrypted, claimSwapEncrypted, claimPasscodePresent,
				claimPasswordRules, claimScreenLockEnabled, claimScreenLockTimeout, claimSecureBoot,
				claimAgentTampered, claimJailbroken, claimFirewallEnabled, claimKernelLockdown,
				claimKernelTainted, claimPendingSecurity, claimRebootRequired},
			// No password or secure boot collector on macOS.
			PlatformMacOS: {claimOS, claimDiskEncrypted, claimFirewallEnabled, claimSIP, claimGatekeeper,
				claimScreenLockEnabled, claimScreenLockTimeout, claimAgentTampered, claimJailbroken},
			// Tamper checks need ACLs, which the cgo-free agent does not read on Windows yet.
			PlatformWindows: {claimOS, claimDiskEncrypted, claimScreenLockEnabled, claimScreenLockTimeout,
				claimFirewallEnabled, claimPasscodePresent, claimPasswordRules, claimJailbroken,
				claimSecureBoot},
		},
	},
	{
		Name: "android-management", Enrollment: EnrollmentAndroid, Provenance: ProvenanceMDM,
		What: "the Android Management API's device status reports (softwareInfo, deviceSettings, nonComplianceDetails)",
		Claims: map[Platform][]string{
			PlatformAndroid: {claimOS, claimDiskEncrypted, claimPasscodePresent, claimPasscodeCompliant,
				claimNoncompliance},
		},
	},
	{
		Name: "play-integrity", Enrollment: EnrollmentAndroid, Provenance: ProvenanceAttested,
		What: "the Android Management API's securityPosture, Play Integrity's hardware-backed verdict",
		Claims: map[Platform][]string{
			PlatformAndroid: {claimJailbroken},
		},
	},
}
