package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) policy(root *yaml.Node) *Policy {
	p := &Policy{}
	d.mapping("", root, map[string]func(string, *yaml.Node){
		"name": func(f string, n *yaml.Node) {
			var s string
			if d.str(f, n, 64, &s) {
				if err := ValidName(s); err != nil {
					d.fail(f, n, "%v", err)
					return
				}
				p.Name = s
			}
		},
		"description":   func(f string, n *yaml.Node) { d.str(f, n, 1024, &p.Description) },
		"passcode":      func(f string, n *yaml.Node) { p.Passcode = d.passcode(f, n) },
		"encryption":    func(f string, n *yaml.Node) { p.Encryption = d.encryption(f, n) },
		"screenshots":   func(f string, n *yaml.Node) { p.Screenshots = d.screenshots(f, n) },
		"backup":        func(f string, n *yaml.Node) { p.Backup = d.backup(f, n) },
		"notifications": func(f string, n *yaml.Node) { p.Notifications = d.notifications(f, n) },
		"data_sharing":  func(f string, n *yaml.Node) { p.DataSharing = d.dataSharing(f, n) },
		"os":            func(f string, n *yaml.Node) { p.OS = d.os(f, n) },
		"integrity":     func(f string, n *yaml.Node) { p.Integrity = d.integrity(f, n) },
		"reporting":     func(f string, n *yaml.Node) { p.Reporting = d.reporting(f, n) },
		"grace":         func(f string, n *yaml.Node) { p.Grace = d.grace(f, n) },
		"managed_data":  func(f string, n *yaml.Node) { p.ManagedData = d.managedData(f, n) },
		"break_glass":   func(f string, n *yaml.Node) { p.BreakGlass = d.breakGlass(f, n) },
	})
	return p
}

func (d *decoder) passcode(field string, n *yaml.Node) *PasscodePolicy {
	pc := &PasscodePolicy{}
	var graceNode, complexNode *yaml.Node
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"required":             func(f string, n *yaml.Node) { d.boolean(f, n, &pc.Required) },
		"min_length":           func(f string, n *yaml.Node) { d.integer(f, n, 0, 16, &pc.MinLength) },
		"require_alphanumeric": func(f string, n *yaml.Node) { d.boolean(f, n, &pc.RequireAlphanumeric) },
		"min_complex_chars": func(f string, n *yaml.Node) {
			complexNode = n
			d.integer(f, n, 0, 4, &pc.MinComplexChars)
		},
		"max_inactivity_minutes": func(f string, n *yaml.Node) {
			d.integer(f, n, 1, 60, &pc.MaxInactivityMinutes)
		},
		"max_grace_minutes": func(f string, n *yaml.Node) {
			var v int
			if d.integer(f, n, 0, 240, &v) {
				pc.MaxGraceMinutes = &v
				graceNode = n
			}
		},
		"max_failed_attempts": func(f string, n *yaml.Node) { d.integer(f, n, 2, 11, &pc.MaxFailedAttempts) },
		"max_age_days":        func(f string, n *yaml.Node) { d.integer(f, n, 1, 730, &pc.MaxAgeDays) },
		"history":             func(f string, n *yaml.Node) { d.integer(f, n, 1, 50, &pc.History) },
	})
	if pc.MinComplexChars > 0 && pc.MinLength > 0 && pc.MinComplexChars > pc.MinLength {
		d.fail(join(field, "min_complex_chars"), complexNode, "is more than min_length (%d)", pc.MinLength)
	}
	if pc.MaxGraceMinutes != nil && !pc.needsPasscode() {
		d.fail(join(field, "max_grace_minutes"), graceNode, "needs a passcode: set required: true")
	}
	return pc
}

func (d *decoder) encryption(field string, n *yaml.Node) *EncryptionPolicy {
	e := &EncryptionPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"required": func(f string, n *yaml.Node) { d.boolean(f, n, &e.Required) },
	})
	return e
}

func (d *decoder) screenshots(field string, n *yaml.Node) *ScreenshotPolicy {
	s := &ScreenshotPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"allowed":                    func(f string, n *yaml.Node) { d.optBool(f, n, &s.Allowed) },
		"screen_observation_allowed": func(f string, n *yaml.Node) { d.optBool(f, n, &s.ScreenObservationAllowed) },
	})
	return s
}

func (d *decoder) backup(field string, n *yaml.Node) *BackupPolicy {
	b := &BackupPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"cloud_backup_allowed":        func(f string, n *yaml.Node) { d.optBool(f, n, &b.CloudBackupAllowed) },
		"cloud_document_sync_allowed": func(f string, n *yaml.Node) { d.optBool(f, n, &b.CloudDocumentSyncAllowed) },
		"require_encrypted_backup":    func(f string, n *yaml.Node) { d.boolean(f, n, &b.RequireEncryptedBackup) },
	})
	return b
}

const maxApps = 100

func (d *decoder) notifications(field string, n *yaml.Node) *NotificationPolicy {
	np := &NotificationPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"lock_screen_view_allowed": func(f string, n *yaml.Node) { d.optBool(f, n, &np.LockScreenViewAllowed) },
		"apps": func(f string, n *yaml.Node) {
			if !d.kind(f, n, yaml.SequenceNode, "a list of {bundle_id, previews}") {
				return
			}
			if len(n.Content) > maxApps {
				d.fail(f, n, "lists %d apps; the limit is %d", len(n.Content), maxApps)
				return
			}
			lines := map[string]int{}
			for i, item := range n.Content {
				af := fmt.Sprintf("%s[%d]", f, i)
				var app AppNotification
				var bundleNode, previewsNode *yaml.Node
				ok := d.mapping(af, item, map[string]func(string, *yaml.Node){
					"bundle_id": func(f string, n *yaml.Node) {
						bundleNode = n
						var s string
						if d.str(f, n, 155, &s) {
							if err := validBundleID(s); err != nil {
								d.fail(f, n, "%v", err)
								return
							}
							app.BundleID = s
						}
					},
					"previews": func(f string, n *yaml.Node) {
						previewsNode = n
						var s string
						if d.str(f, n, 32, &s) {
							switch t := PreviewType(s); t {
							case PreviewAlways, PreviewWhenUnlocked, PreviewNever:
								app.Previews = t
							default:
								d.fail(f, n, "must be never, when_unlocked or always (got %q)", clip(s))
							}
						}
					},
				})
				if !ok {
					continue
				}
				if bundleNode == nil {
					d.fail(join(af, "bundle_id"), item, "is required")
				}
				if previewsNode == nil {
					d.fail(join(af, "previews"), item, "is required: never, when_unlocked or always")
				}
				if app.BundleID == "" || app.Previews == "" {
					continue
				}
				if prev, dup := lines[app.BundleID]; dup {
					d.fail(join(af, "bundle_id"), bundleNode, "%s is already listed on line %d", app.BundleID, prev)
					continue
				}
				lines[app.BundleID] = bundleNode.Line
				np.Apps = append(np.Apps, app)
			}
			slices.SortFunc(np.Apps, func(a, b AppNotification) int { return strings.Compare(a.BundleID, b.BundleID) })
		},
	})
	return np
}

// knownDistributions may be written directly under os as shorthand for os.linux.ID.
var knownDistributions = map[string]bool{
	"ubuntu": true, "debian": true, "fedora": true, "rhel": true, "centos": true, "rocky": true,
	"almalinux": true, "ol": true, "amzn": true, "sles": true, "opensuse-leap": true,
	"linuxmint": true, "pop": true, "raspbian": true, "alpine": true,
}

const maxDistributions = 32

func (d *decoder) os(field string, n *yaml.Node) *OSPolicy {
	o := &OSPolicy{}
	distro := func(f string, id string, keyNode, v *yaml.Node) {
		if o.Linux == nil {
			o.Linux = map[string]string{}
		}
		if _, dup := o.Linux[id]; dup {
			d.fail(f, keyNode, "distribution %s is given more than once", id)
			return
		}
		if len(o.Linux) >= maxDistributions {
			d.fail(f, keyNode, "too many distributions; the limit is %d", maxDistributions)
			return
		}
		var s string
		d.version(f, v, &s)
		if s != "" {
			o.Linux[id] = s
		}
	}
	if !d.kind(field, n, yaml.MappingNode, "a mapping of platform to minimum version") {
		return o
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.fail(field, k, "keys must be plain strings")
			continue
		}
		f := join(field, k.Value)
		if seen[k.Value] {
			d.fail(f, k, "defined more than once")
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "ios":
			d.version(f, v, &o.IOS)
		case "ipados":
			d.version(f, v, &o.IPadOS)
		case "macos":
			d.version(f, v, &o.MacOS)
		case "windows":
			d.version(f, v, &o.Windows)
		case "update_deadline":
			o.UpdateDeadline = d.osUpdates(f, v)
		case "android":
			d.version(f, v, &o.Android)
			if o.Android != "" {
				if _, ok := AndroidAPILevel(o.Android); !ok {
					d.fail(f, v, "Android %s is not a release the Android Management API manages (6 or later)", clip(o.Android))
					o.Android = ""
				}
			}
		case "android_security_patch":
			d.patchLevel(f, v, &o.AndroidSecurityPatch)
		case "linux":
			if !d.kind(f, v, yaml.MappingNode, "a mapping of distribution ID to minimum version") {
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				dk, dv := v.Content[j], v.Content[j+1]
				if dk.Kind != yaml.ScalarNode || dk.ShortTag() != "!!str" || !validDistributionID(dk.Value) {
					d.fail(f, dk, "%q is not an os-release ID (lower case letters, digits, \".\", \"_\", \"-\")", clip(dk.Value))
					continue
				}
				distro(join(f, dk.Value), dk.Value, dk, dv)
			}
		default:
			if knownDistributions[k.Value] {
				distro(join(field+".linux", k.Value), k.Value, k, v)
				continue
			}
			d.fail(f, k, "unknown platform; use ios, ipados, macos, windows, android, android_security_patch, or linux: {ID: version} for Linux distributions (or update_deadline)")
		}
	}
	return o
}

func (d *decoder) integrity(field string, n *yaml.Node) *IntegrityPolicy {
	ip := &IntegrityPolicy{}
	var evidenceNode *yaml.Node
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"block_jailbroken": func(f string, n *yaml.Node) { d.boolean(f, n, &ip.BlockJailbroken) },
		"jailbreak_evidence": func(f string, n *yaml.Node) {
			var s string
			if !d.str(f, n, 32, &s) {
				return
			}
			evidenceNode = n
			switch JailbreakEvidence(s) {
			case JailbreakObserved:
				// The default, stored as empty so both spellings hash alike.
			case JailbreakRequired:
				ip.JailbreakEvidence = JailbreakRequired
			default:
				d.fail(f, n, "must be observed (deny a device reported jailbroken) or required (also deny a device no source reported on) (got %q)", clip(s))
			}
		},
		"require_sip":           func(f string, n *yaml.Node) { d.boolean(f, n, &ip.RequireSIP) },
		"require_secure_boot":   func(f string, n *yaml.Node) { d.boolean(f, n, &ip.RequireSecureBoot) },
		"block_agent_tampering": func(f string, n *yaml.Node) { d.boolean(f, n, &ip.BlockAgentTampering) },
		"require_app_attestation": func(f string, n *yaml.Node) {
			d.boolean(f, n, &ip.RequireAppAttestation)
		},
	})
	if evidenceNode != nil && !ip.BlockJailbroken {
		d.fail(join(field, "jailbreak_evidence"), evidenceNode, "applies to block_jailbroken: set block_jailbroken: true or remove it")
	}
	return ip
}

func (d *decoder) reporting(field string, n *yaml.Node) *ReportingPolicy {
	r := &ReportingPolicy{}
	var intervalNode *yaml.Node
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"max_age": func(f string, n *yaml.Node) { d.duration(f, n, time.Minute, 30*24*time.Hour, &r.MaxAge) },
		"interval": func(f string, n *yaml.Node) {
			intervalNode = n
			d.duration(f, n, 30*time.Second, 24*time.Hour, &r.Interval)
		},
	})
	if r.Interval > 0 {
		maxAge := Duration(DefaultReportMaxAge)
		if r.MaxAge > 0 {
			maxAge = r.MaxAge
		}
		if r.Interval >= maxAge {
			d.fail(join(field, "interval"), intervalNode, "must be shorter than max_age (%s), or every device turns stale", time.Duration(maxAge))
		}
	}
	return r
}

func (d *decoder) grace(field string, n *yaml.Node) *GracePolicy {
	g := &GracePolicy{}
	const maxGrace = 30 * 24 * time.Hour
	// "grace: 24h" is shorthand for "grace: {period: 24h}".
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		d.duration(field, n, 0, maxGrace, &g.Period)
		return g
	}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"period":      func(f string, n *yaml.Node) { d.duration(f, n, 0, maxGrace, &g.Period) },
		"warn_before": func(f string, n *yaml.Node) { d.duration(f, n, time.Minute, maxGrace, &g.WarnBefore) },
		"no_grace_for": func(f string, n *yaml.Node) {
			if !d.kind(f, n, yaml.SequenceNode, "a list of reason codes") {
				return
			}
			for i, item := range n.Content {
				itf := fmt.Sprintf("%s[%d]", f, i)
				var s string
				if !d.str(itf, item, 64, &s) {
					continue
				}
				if !slices.Contains(ReasonCodes, s) {
					d.fail(itf, item, "unknown reason code %q", clip(s))
					continue
				}
				if slices.Contains(g.NoGraceFor, s) {
					d.fail(itf, item, "%s is listed more than once", s)
					continue
				}
				g.NoGraceFor = append(g.NoGraceFor, s)
			}
			slices.Sort(g.NoGraceFor)
		},
	})
	return g
}

const (
	maxManagedPaths = 64
	maxPathLen      = 1024
)

func (d *decoder) managedData(field string, n *yaml.Node) map[Platform][]string {
	out := map[Platform][]string{}
	handler := func(pl Platform) func(string, *yaml.Node) {
		return func(f string, n *yaml.Node) {
			if !d.kind(f, n, yaml.SequenceNode, "a list of paths") {
				return
			}
			if len(n.Content) > maxManagedPaths {
				d.fail(f, n, "lists %d paths; the limit is %d", len(n.Content), maxManagedPaths)
				return
			}
			var paths []string
			for i, item := range n.Content {
				itf := fmt.Sprintf("%s[%d]", f, i)
				var s string
				if !d.str(itf, item, maxPathLen, &s) {
					continue
				}
				if err := validManagedPath(pl, s); err != nil {
					d.fail(itf, item, "%v", err)
					continue
				}
				if slices.Contains(paths, s) {
					d.fail(itf, item, "%s is listed more than once", s)
					continue
				}
				paths = append(paths, s)
			}
			slices.Sort(paths)
			if len(paths) > 0 {
				out[pl] = paths
			}
		}
	}
	apple := func(f string, n *yaml.Node) {
		d.fail(f, n, "selective wipe on iOS and iPadOS removes managed apps, not paths; remove this entry")
	}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"macos":   handler(PlatformMacOS),
		"windows": handler(PlatformWindows),
		"linux":   handler(PlatformLinux),
		"ios":     apple,
		"ipados":  apple,
	})
	if len(out) == 0 {
		return nil
	}
	return out
}
