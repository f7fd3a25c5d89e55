package policies

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// UnobservableRule is a rule of a policy that no source Hale has can observe on some platforms,
// for devices of one enrollment. Evaluation fails closed on a fact nobody reports, so every such
// device stays noncompliant under the rule whatever its real state, and is denied once its
// grace ends.
type UnobservableRule struct {
	// Rule is the policy field that makes the rule ("integrity.block_jailbroken").
	Rule string `json:"rule"`
	// Enrollment is the enrollment of the devices concerned (EnrollmentApple, EnrollmentAgent).
	Enrollment string `json:"enrollment"`
	// Platforms are the platforms of that enrollment where nothing observes the rule.
	Platforms []Platform `json:"platforms"`
	// Needs lists the facts (posture claim names) the rule needs there that no source reports;
	// "a or b" when either would do.
	Needs []string `json:"needs"`
	// Why says it in a sentence for people.
	Why string `json:"why"`
}

// CheckObservable is the satisfiability check: for every enrollment and platform that sources
// cover, it returns the rules of p that need a fact none of the sources reports there. Rules
// come sorted by name, then by enrollment in the order sources first name it. A nil sources
// means Sources. An empty result means every rule can be met on every platform the sources
// cover; it says nothing about whether devices do meet it.
func CheckObservable(p *Policy, sources []Source) []UnobservableRule {
	if p == nil {
		return nil
	}
	if sources == nil {
		sources = Sources
		// The app is a source only where the policy requires it: a policy that does not can
		// hold no device to the app's reports, since nothing says the device runs the app.
		if p.Integrity != nil && p.Integrity.RequireAppAttestation {
			sources = append(slices.Clip(sources), MessagingApp)
		}
	}
	type key struct{ rule, enrollment string }
	found := map[key]*UnobservableRule{}
	var keys []key
	enrollments := enrollmentsOf(sources)
	for _, enr := range enrollments {
		for _, pl := range platformsOf(sources, enr) {
			for _, n := range ruleNeeds(p, pl) {
				if observable(sources, enr, pl, n.anyOf) {
					continue
				}
				k := key{n.rule, enr}
				u := found[k]
				if u == nil {
					u = &UnobservableRule{Rule: n.rule, Enrollment: enr}
					found[k] = u
					keys = append(keys, k)
				}
				if !slices.Contains(u.Platforms, pl) {
					u.Platforms = append(u.Platforms, pl)
				}
				if fact := strings.Join(n.anyOf, " or "); !slices.Contains(u.Needs, fact) {
					u.Needs = append(u.Needs, fact)
				}
			}
		}
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		return cmp.Or(strings.Compare(a.rule, b.rule),
			cmp.Compare(slices.Index(enrollments, a.enrollment), slices.Index(enrollments, b.enrollment)))
	})
	out := make([]UnobservableRule, 0, len(keys))
	for _, k := range keys {
		u := found[k]
		u.Why = whyUnobservable(u, sources)
		out = append(out, *u)
	}
	return out
}

// ruleHints say how to make a rule observable where the policy has a choice.
var ruleHints = map[string]string{
	"integrity.block_jailbroken": "; jailbreak_evidence: observed (the default) denies only a device a source reports jailbroken",
}

func whyUnobservable(u *UnobservableRule, sources []Source) string {
	pls := make([]string, len(u.Platforms))
	for i, pl := range u.Platforms {
		pls[i] = string(pl)
	}
	var consulted []string
	for i := range sources {
		s := &sources[i]
		if s.Enrollment != "" && s.Enrollment != u.Enrollment {
			continue
		}
		for _, pl := range u.Platforms {
			if _, ok := s.Claims[pl]; ok {
				consulted = append(consulted, s.Name+": "+s.What)
				break
			}
		}
	}
	return fmt.Sprintf("%s needs %s, and no source Hale has for %s devices enrolled as %s reports it (%s): "+
		"every such device stays noncompliant under this rule and is denied when its grace ends%s",
		u.Rule, strings.Join(u.Needs, ", "), strings.Join(pls, ", "), u.Enrollment,
		strings.Join(consulted, "; "), ruleHints[u.Rule])
}

// enrollmentsOf lists the enrollments sources name, in the order they first name them.
func enrollmentsOf(sources []Source) []string {
	var out []string
	for i := range sources {
		if e := sources[i].Enrollment; e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// platformsOf lists the platforms the sources of an enrollment cover, Hale's known platforms
// first in their usual order, then any others by name.
func platformsOf(sources []Source, enrollment string) []Platform {
	var out []Platform
	for i := range sources {
		if sources[i].Enrollment != enrollment {
			continue
		}
		for pl := range sources[i].Claims {
			if !slices.Contains(out, pl) {
				out = append(out, pl)
			}
		}
	}
	rank := func(pl Platform) int {
		if b := platformBit(pl); b != 0 {
			return int(b)
		}
		return 1 << 16 // not one Hale knows yet: after those it does
	}
	slices.SortFunc(out, func(a, b Platform) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(string(a), string(b)))
	})
	return out
}

// observable reports whether a source reports one of anyOf on pl for devices of enrollment.
func observable(sources []Source, enrollment string, pl Platform, anyOf []string) bool {
	for i := range sources {
		s := &sources[i]
		if s.Enrollment != "" && s.Enrollment != enrollment {
			continue
		}
		for _, c := range anyOf {
			if s.reports(pl, c) {
				return true
			}
		}
	}
	return false
}

// need is one fact a rule asks of a posture: any one of the claims will do. The first is the
// claim evaluation names (claim_unknown) when none is known.
type need struct {
	rule  string
	anyOf []string
}

// ruleNeeds returns what evaluating p on pl asks of a posture, for a device on which every
// check runs (supervised, a passcode set). It follows Evaluate's rule functions;
// TestRuleNeedsMatchEvaluate holds the two together.
func ruleNeeds(p *Policy, pl Platform) []need {
	var out []need
	add := func(rule string, anyOf ...string) { out = append(out, need{rule, anyOf}) }
	if ip := p.Integrity; ip != nil {
		if ip.BlockJailbroken && ip.JailbreakEvidence == JailbreakRequired {
			add("integrity.block_jailbroken", claimJailbroken)
		}
		if ip.RequireSIP && pl == PlatformMacOS {
			add("integrity.require_sip", claimSIP)
		}
		if ip.RequireSecureBoot && desktops.has(pl) {
			add("integrity.require_secure_boot", claimSecureBoot)
		}
		if ip.BlockAgentTampering && desktops.has(pl) {
			add("integrity.block_agent_tampering", claimAgentTampered)
		}
		if ip.RequireAppAttestation && appleMobile.has(pl) {
			add("integrity.require_app_attestation", claimAppAttested)
		}
	}
	if p.OS != nil {
		if _, enforced, listed := p.OS.Minimum(pl, ""); enforced || !listed {
			add("os."+string(pl), claimOS)
		}
		if pl == PlatformAndroid && p.OS.AndroidSecurityPatch != "" {
			add("os.android_security_patch", claimOS)
		}
	}
	if pc := p.Passcode; pc != nil && pc.needsPasscode() {
		present := pc.firstSet("required", "min_length", "require_alphanumeric", "min_complex_chars",
			"max_age_days", "max_inactivity_minutes")
		add(present, claimPasscodePresent)
		if pc.hasComplexity() {
			add(pc.firstSet("min_length", "require_alphanumeric", "min_complex_chars", "max_age_days"),
				claimPasscodeCompliant, claimPasswordRules)
		}
		if desktops.has(pl) {
			// On macOS an installed passcode profile stands in for the screen-lock facts.
			lock, timeout := []string{claimScreenLockEnabled}, []string{claimScreenLockTimeout}
			if pl == PlatformMacOS {
				lock, timeout = append(lock, claimInstalledProfiles), append(timeout, claimInstalledProfiles)
			}
			add(present, lock...)
			if pc.MaxInactivityMinutes > 0 {
				add("passcode.max_inactivity_minutes", timeout...)
			}
		}
	}
	if p.Encryption != nil && p.Encryption.Required {
		add("encryption.required", claimDiskEncrypted)
		if pl == PlatformLinux {
			add("encryption.required", claimSwapEncrypted)
		}
	}
	if appleAll.has(pl) {
		out = append(out, appleNeeds(p, pl)...)
	}
	if pl == PlatformAndroid {
		out = append(out, androidNeeds(p)...)
	}
	return out
}

// appleNeeds: supervision for supervised-only settings, and the profile list for every profile
// the policy renders for the platform (evaluation's apple).
func appleNeeds(p *Policy, pl Platform) []need {
	var out []need
	notify := p.Notifications != nil && len(p.Notifications.Apps) > 0
	for i := range restrictions {
		r := &restrictions[i]
		if _, set := r.value(p); set && r.Platforms.has(pl) && r.Supervised.has(pl) {
			out = append(out, need{r.Field, []string{claimSupervised}})
		}
	}
	if notify && notificationsSupervised.has(pl) {
		out = append(out, need{"notifications.apps", []string{claimSupervised}})
	}
	k := expectedAppleProfiles(p, pl, true)
	if k.passcode {
		out = append(out, need{p.Passcode.firstSet("required", "min_length", "require_alphanumeric",
			"min_complex_chars", "max_age_days", "max_inactivity_minutes", "max_failed_attempts", "history",
			"max_grace_minutes"), []string{claimInstalledProfiles}})
	}
	if k.restrictions {
		for i := range restrictions {
			r := &restrictions[i]
			if _, set := r.value(p); set && r.Platforms.has(pl) {
				out = append(out, need{r.Field, []string{claimInstalledProfiles}})
			}
		}
	}
	if k.fileVault {
		out = append(out, need{"encryption.required", []string{claimInstalledProfiles}})
	}
	if k.notifications {
		out = append(out, need{"notifications.apps", []string{claimInstalledProfiles}})
	}
	return out
}

// firstSet returns "passcode.NAME" for the first of the named settings pc sets, or "passcode".
func (pc *PasscodePolicy) firstSet(names ...string) string {
	for _, n := range names {
		var set bool
		switch n {
		case "required":
			set = pc.Required
		case "min_length":
			set = pc.MinLength > 0
		case "require_alphanumeric":
			set = pc.RequireAlphanumeric
		case "min_complex_chars":
			set = pc.MinComplexChars > 0
		case "max_age_days":
			set = pc.MaxAgeDays > 0
		case "max_inactivity_minutes":
			set = pc.MaxInactivityMinutes > 0
		case "max_failed_attempts":
			set = pc.MaxFailedAttempts > 0
		case "history":
			set = pc.History > 0
		case "max_grace_minutes":
			set = pc.MaxGraceMinutes != nil
		}
		if set {
			return "passcode." + n
		}
	}
	return "passcode"
}
