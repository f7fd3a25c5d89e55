package policies

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// OSUpdate is an OS release a platform's devices must install by a deadline (os.update_deadline).
// On Apple devices it becomes a com.apple.configuration.softwareupdate.enforcement.specific
// declaration: the device forces the install at Deadline, in its own time zone. Enforcement works
// only for a release Apple publishes in its software update catalog for the device; a version
// Apple never shipped for it is reported as a failed install.
type OSUpdate struct {
	// Version is the target OS version ("17.6.1").
	Version string `json:"version"`
	// Build is the target build ("21G93"); optional, and needed only for Rapid Security
	// Responses and betas.
	Build string `json:"build,omitempty"`
	// Deadline is the device-local date and time the install is forced at, as Apple takes it:
	// "2026-01-15T18:00:00" (RFC 3339 without a zone offset).
	Deadline string `json:"deadline"`
}

// DeadlineLayout is the layout of OSUpdate.Deadline (Apple's TargetLocalDateTime).
const DeadlineLayout = "2006-01-02T15:04:05"

// UpdateFor returns the OS update the policy sets for platform, if any.
func (o *OSPolicy) UpdateFor(pl Platform) (OSUpdate, bool) {
	if o == nil {
		return OSUpdate{}, false
	}
	u, ok := o.UpdateDeadline[pl]
	return u, ok
}

// osUpdates reads os.update_deadline: a mapping of Apple platform to {version, build, deadline}.
func (d *decoder) osUpdates(field string, n *yaml.Node) map[Platform]OSUpdate {
	out := map[Platform]OSUpdate{}
	handler := func(pl Platform) func(string, *yaml.Node) {
		return func(f string, v *yaml.Node) {
			var u OSUpdate
			var deadlineNode, versionNode *yaml.Node
			d.mapping(f, v, map[string]func(string, *yaml.Node){
				"version":  func(f string, n *yaml.Node) { versionNode = n; d.version(f, n, &u.Version) },
				"build":    func(f string, n *yaml.Node) { d.build(f, n, &u.Build) },
				"deadline": func(f string, n *yaml.Node) { deadlineNode = n; d.deadline(f, n, &u.Deadline) },
			})
			if v.Kind != yaml.MappingNode {
				return
			}
			if versionNode == nil {
				d.fail(join(f, "version"), v, "is required: the OS version to install")
			}
			if deadlineNode == nil {
				d.fail(join(f, "deadline"), v, "is required: when the install is forced, as \"2026-01-15T18:00:00\" (device-local time)")
			}
			if u.Version != "" && u.Deadline != "" {
				out[pl] = u
			}
		}
	}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"ios":    handler(PlatformIOS),
		"ipados": handler(PlatformIPadOS),
		"macos":  handler(PlatformMacOS),
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// build reads an Apple build identifier such as "21G93" or "22A3354a".
func (d *decoder) build(field string, n *yaml.Node, dst *string) {
	var s string
	if !d.str(field, n, 32, &s) {
		return
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			d.fail(field, n, "must be an Apple build such as \"21G93\" (letters and digits)")
			return
		}
	}
	*dst = s
}

// deadline reads a device-local date and time in DeadlineLayout.
func (d *decoder) deadline(field string, n *yaml.Node, dst *string) {
	var s string
	if !d.str(field, n, 32, &s) {
		return
	}
	if _, err := time.Parse(DeadlineLayout, s); err != nil {
		d.fail(field, n, "must be a local date and time such as \"2026-01-15T18:00:00\" (no zone: the device's own applies), got %q", clip(s))
		return
	}
	*dst = s
}
