package policies

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ValidName checks a policy name: 1 to 64 letters, digits, "-" or "_", starting with a letter
// or digit. Names end up in Apple PayloadIdentifiers and URLs, so nothing else is allowed.
func ValidName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("policy name must be 1 to 64 characters (got %d)", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isAlnum(c):
		case (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("policy name %q: use letters, digits, \"-\" and \"_\", starting with a letter or digit", clip(name))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validBundleID checks an Apple bundle identifier: reverse-DNS, at least two non-empty
// components of letters, digits and "-".
func validBundleID(s string) error {
	if len(s) == 0 || len(s) > 155 {
		return fmt.Errorf("bundle ID must be 1 to 155 characters")
	}
	parts := 0
	for comp := range strings.SplitSeq(s, ".") {
		if comp == "" {
			return fmt.Errorf("%q is not a bundle ID such as com.example.app (empty component)", clip(s))
		}
		for i := 0; i < len(comp); i++ {
			if !isAlnum(comp[i]) && comp[i] != '-' {
				return fmt.Errorf("%q is not a bundle ID such as com.example.app (use letters, digits, \"-\" and \".\")", clip(s))
			}
		}
		parts++
	}
	if parts < 2 {
		return fmt.Errorf("%q is not a bundle ID such as com.example.app (needs at least two components)", clip(s))
	}
	return nil
}

// validDistributionID checks an os-release ID: lower-case letters, digits, ".", "_", "-".
func validDistributionID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validVersion checks a minimum version in a policy: 1 to 6 dot-separated numbers of at most 9
// digits ("17.4", "10.0.22631", "22.04").
func validVersion(s string) error {
	bad := fmt.Errorf("%q is not a version such as \"17.4\" or \"10.0.22631\": use numbers separated by dots", clip(s))
	if s == "" || len(s) > 64 {
		return bad
	}
	comps := strings.Split(s, ".")
	if len(comps) > 6 {
		return bad
	}
	for _, c := range comps {
		if c == "" || len(c) > 9 {
			return bad
		}
		for i := 0; i < len(c); i++ {
			if c[i] < '0' || c[i] > '9' {
				return bad
			}
		}
	}
	return nil
}

// Paths that a selective wipe must never remove, nor anything beneath them.
var protectedTrees = map[Platform][]string{
	PlatformLinux: {"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
		"/run", "/sbin", "/sys", "/usr", "/snap", "/var/lib/dpkg", "/var/lib/rpm", "/var/log"},
	PlatformMacOS: {"/System", "/bin", "/sbin", "/usr", "/etc", "/dev", "/cores", "/private/etc",
		"/private/var/db", "/Library/Apple", "/var/db", "/Library/Keychains", "~/Library/Keychains"},
	PlatformWindows: {`C:\Windows`, `%SYSTEMROOT%`, `%WINDIR%`},
}

// Paths that may hold managed data beneath them but must not be removed whole.
var protectedDirs = map[Platform][]string{
	PlatformLinux: {"/home", "/root", "/opt", "/srv", "/mnt", "/media", "/tmp", "/var", "/var/lib",
		"/var/cache", "/var/tmp", "/var/opt", "/usr/local"},
	PlatformMacOS: {"/Users", "/Library", "/Applications", "/private", "/var", "/tmp", "/opt",
		"/Volumes", "/Library/Application Support", "/Library/Preferences", "/Library/Caches",
		"/Users/Shared", "/private/var", "/private/tmp"},
	PlatformWindows: {`C:\Users`, `C:\Program Files`, `C:\Program Files (x86)`, `C:\ProgramData`,
		`%APPDATA%`, `%LOCALAPPDATA%`, `%PROGRAMDATA%`, `%USERPROFILE%`, `~`},
}

// Home directory folders that must not be removed whole ("~/Documents").
var homeFolders = []string{"Library", "Documents", "Desktop", "Downloads", "Pictures", "Movies",
	"Music", "Public", "Videos", "AppData", ".config", ".local", ".cache", ".ssh", ".gnupg",
	"Library/Application Support", "Library/Preferences", "Library/Caches", "Library/Containers",
	"Library/Group Containers", ".local/share", "AppData/Local", "AppData/Roaming"}

var errDangerousPath = errors.New("would remove a system or user folder; name the application's own data folder")

// validManagedPath checks a selective-wipe path for a desktop platform. Paths must be absolute
// (or start at a home directory), already clean, and must not name the system, a user's whole
// home or a shared top-level folder.
func validManagedPath(pl Platform, p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("path is empty")
	}
	if strings.ContainsAny(p, "*?[") {
		return errors.New("wildcards are not supported; list each folder")
	}
	if pl == PlatformWindows {
		return validWindowsPath(p)
	}
	var rel string
	switch {
	case p == "~" || p == "~/":
		return errDangerousPath
	case strings.HasPrefix(p, "~/"):
		rel = p[2:]
	case strings.HasPrefix(p, "/"):
		rel = p[1:]
	default:
		return fmt.Errorf("%q is relative; give an absolute path or one starting with ~/", clip(p))
	}
	if strings.Contains(p, "\\") {
		return errors.New("use / as the path separator")
	}
	for c := range strings.SplitSeq(rel, "/") {
		if c == ".." || c == "." {
			return fmt.Errorf("%q must not contain . or .. components", clip(p))
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("%q is not clean; write it without trailing or doubled slashes", clip(p))
	}
	if p == "/" || !strings.Contains(rel, "/") && !strings.HasPrefix(p, "~/") {
		// A top-level directory (/opt, /srv) is never one application's data.
		return errDangerousPath
	}
	lower := p
	if pl == PlatformMacOS {
		lower = strings.ToLower(p)
	}
	if c := strings.Count(rel, "/") + 1; c < 3 && (strings.HasPrefix(lower, "/home/") || strings.HasPrefix(lower, "/users/")) {
		return errDangerousPath // a whole user's home directory
	}
	if strings.HasPrefix(p, "~/") {
		for _, f := range homeFolders {
			if strings.EqualFold(rel, f) {
				return errDangerousPath
			}
		}
	}
	return checkProtected(pl, p, "/")
}

func checkProtected(pl Platform, p, sep string) error {
	fold := pl != PlatformLinux // macOS and Windows file systems are case-insensitive by default
	eq := func(a, b string) bool {
		if fold {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	for _, t := range protectedTrees[pl] {
		if eq(p, t) || len(p) > len(t) && eq(p[:len(t)], t) && p[len(t):len(t)+1] == sep {
			return errDangerousPath
		}
	}
	for _, t := range protectedDirs[pl] {
		if eq(p, t) {
			return errDangerousPath
		}
	}
	return nil
}

func validWindowsPath(p string) error {
	if strings.Contains(p, "/") {
		return errors.New(`use \ as the path separator on Windows`)
	}
	var rest string
	switch {
	case len(p) >= 3 && isLetter(p[0]) && p[1] == ':' && p[2] == '\\':
		rest = p[3:]
	case strings.HasPrefix(p, `~\`):
		rest = p[2:]
	case strings.HasPrefix(p, "%"):
		end := strings.IndexByte(p[1:], '%')
		if end <= 0 || !knownWindowsVar(p[1:1+end]) || len(p) < end+3 || p[end+2] != '\\' {
			return fmt.Errorf("%q: start with a drive (C:\\), ~\\ or one of %%APPDATA%%, %%LOCALAPPDATA%%, %%PROGRAMDATA%%, %%USERPROFILE%%", clip(p))
		}
		rest = p[end+3:]
	default:
		return fmt.Errorf("%q is relative; start with a drive (C:\\), ~\\ or %%LOCALAPPDATA%%\\", clip(p))
	}
	if rest == "" {
		return errDangerousPath
	}
	comps := strings.Split(rest, `\`)
	for _, c := range comps {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%q must not contain empty, . or .. components", clip(p))
		}
		if strings.ContainsAny(c, `<>:"|`) || strings.HasSuffix(c, " ") || strings.HasSuffix(c, ".") {
			return fmt.Errorf("%q has a component Windows does not allow", clip(p))
		}
	}
	drive := len(p) >= 2 && p[1] == ':'
	if drive && len(comps) < 2 {
		return errDangerousPath // C:\Something is a top-level folder
	}
	if drive && strings.EqualFold(comps[0], "Users") && len(comps) < 3 {
		return errDangerousPath // C:\Users\alice is a whole profile
	}
	if strings.HasPrefix(p, `~\`) || strings.HasPrefix(strings.ToUpper(p), "%USERPROFILE%") {
		sub := strings.ReplaceAll(rest, `\`, "/")
		for _, f := range homeFolders {
			if strings.EqualFold(sub, f) {
				return errDangerousPath
			}
		}
	}
	// Drive letters other than C: are checked against the same system folders.
	norm := p
	if drive {
		norm = "C" + p[1:]
	}
	return checkProtected(PlatformWindows, norm, `\`)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func knownWindowsVar(v string) bool {
	switch strings.ToUpper(v) {
	case "APPDATA", "LOCALAPPDATA", "PROGRAMDATA", "USERPROFILE", "SYSTEMROOT", "WINDIR":
		return true
	}
	return false
}
