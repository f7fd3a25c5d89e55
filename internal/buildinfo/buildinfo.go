// Package buildinfo reports the version of a Hale binary.
package buildinfo

import "runtime/debug"

// Version is set at link time (-ldflags "-X github.com/halemdm/hale/internal/buildinfo.Version=v1.2.3");
// otherwise it is read from the module build information.
var Version = ""

// String returns the version, the VCS revision when known, and "devel" otherwise.
func String() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
