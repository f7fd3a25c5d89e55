package policies

import (
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// BreakGlassPolicy is HIPAA's emergency access procedure (45 CFR 164.312(a)(2)(ii)) for a
// policy's devices: whether the device's owner (or the security team for them) may open
// clinical messaging on a device that is denied, for how long, how often, and past which
// reasons. A device that is wiped, lost, locked, revoked, jailbroken or whose integrity cannot
// be attested is never let through, whatever the policy says.
type BreakGlassPolicy struct {
	Allowed bool `json:"allowed,omitempty"`
	// Duration is the longest one use lasts (a request may ask for less).
	Duration Duration `json:"duration,omitempty"`
	// MaxUses is how many uses one person may start within Per.
	MaxUses int      `json:"max_uses,omitempty"`
	Per     Duration `json:"per,omitempty"`
	// Overridable are the reason codes a use lets through (sorted). A device denied for any
	// other reason is not let through.
	Overridable []string `json:"overridable,omitempty"`
}

// Break-glass bounds.
const (
	DefaultBreakGlassDuration = 4 * time.Hour
	MaxBreakGlassDuration     = 24 * time.Hour
	DefaultBreakGlassPer      = 24 * time.Hour
)

// NeverOverridable are the policy reason codes no break-glass use lets through: the device
// itself is not trustworthy, not merely out of date. (The device states wiped, lost, locked,
// unenrolled, retired and revoked certificates are refused by the access layer as well.)
var NeverOverridable = []string{CodeJailbroken, CodeAppNotAttested, CodeAgentTampered, CodeSIPDisabled, CodeSecureBootOff,
	CodeNoPolicy, CodePlatformUnknown}

// BreakGlassDuration is the longest one use may last.
func (b *BreakGlassPolicy) BreakGlassDuration() time.Duration {
	if b.Duration > 0 {
		return time.Duration(b.Duration)
	}
	return DefaultBreakGlassDuration
}

// Window is the period MaxUses counts over.
func (b *BreakGlassPolicy) Window() time.Duration {
	if b.Per > 0 {
		return time.Duration(b.Per)
	}
	return DefaultBreakGlassPer
}

// Limit is how many uses one person may start within Window.
func (b *BreakGlassPolicy) Limit() int {
	if b.MaxUses > 0 {
		return b.MaxUses
	}
	return 1
}

func (d *decoder) breakGlass(field string, n *yaml.Node) *BreakGlassPolicy {
	b := &BreakGlassPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"allowed":  func(f string, n *yaml.Node) { d.boolean(f, n, &b.Allowed) },
		"duration": func(f string, n *yaml.Node) { d.duration(f, n, time.Minute, MaxBreakGlassDuration, &b.Duration) },
		"max_uses": func(f string, n *yaml.Node) { d.integer(f, n, 1, 100, &b.MaxUses) },
		"per":      func(f string, n *yaml.Node) { d.duration(f, n, time.Hour, 31*24*time.Hour, &b.Per) },
		"overridable": func(f string, n *yaml.Node) {
			if !d.kind(f, n, yaml.SequenceNode, "a list of reason codes") {
				return
			}
			for i, item := range n.Content {
				itf := fmt.Sprintf("%s[%d]", f, i)
				var s string
				switch {
				case !d.str(itf, item, 64, &s):
				case !slices.Contains(ReasonCodes, s):
					d.fail(itf, item, "unknown reason code %q", clip(s))
				case slices.Contains(NeverOverridable, s):
					d.fail(itf, item, "%s can never be overridden: the device itself cannot be trusted", s)
				case slices.Contains(b.Overridable, s):
					d.fail(itf, item, "%s is listed more than once", s)
				default:
					b.Overridable = append(b.Overridable, s)
				}
			}
			slices.Sort(b.Overridable)
		},
	})
	if b.Allowed && len(b.Overridable) == 0 {
		d.fail(field, n, "allowed needs an overridable list naming the reasons break-glass may let through")
	}
	return b
}
