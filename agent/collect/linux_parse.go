package collect

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/halemdm/hale/policies"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Major, Minor uint32
	MountPoint   string
	FSType       string
	Source       string
}

// parseMountinfo parses /proc/PID/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(data []byte) ([]mountEntry, error) {
	var ms []mountEntry
	err := lines(data, func(l string) error {
		if l == "" {
			return nil
		}
		f := strings.Fields(l)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 10 || sep < 0 || sep+2 >= len(f) {
			return fmt.Errorf("mountinfo: malformed line %q", truncate(l))
		}
		maj, min, err := parseDevNum(f[2])
		if err != nil {
			return fmt.Errorf("mountinfo: %w", err)
		}
		ms = append(ms, mountEntry{
			Major: maj, Minor: min,
			MountPoint: unescapeOctal(f[4]),
			FSType:     f[sep+1],
			Source:     unescapeOctal(f[sep+2]),
		})
		return nil
	})
	if err == nil && len(ms) == 0 {
		err = errors.New("mountinfo: no mounts")
	}
	return ms, err
}

// parseDevNum parses "MAJ:MIN".
func parseDevNum(s string) (uint32, uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	maj, err1 := strconv.ParseUint(a, 10, 32)
	min, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad device number %q", truncate(s))
	}
	return uint32(maj), uint32(min), nil
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline and backslash in paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// swapEntry is one active swap area from /proc/swaps.
type swapEntry struct {
	Filename string
	Type     string // partition or file
}

// parseSwaps parses /proc/swaps:
//
//	Filename				Type		Size		Used		Priority
//	/dev/dm-1                               partition	8388604		0		-2
func parseSwaps(data []byte) ([]swapEntry, error) {
	var ss []swapEntry
	first := true
	err := lines(data, func(l string) error {
		if first {
			first = false
			if !strings.HasPrefix(l, "Filename") {
				return fmt.Errorf("swaps: unexpected header %q", truncate(l))
			}
			return nil
		}
		if l == "" {
			return nil
		}
		f := strings.Fields(l)
		if len(f) < 5 {
			return fmt.Errorf("swaps: malformed line %q", truncate(l))
		}
		ss = append(ss, swapEntry{Filename: unescapeOctal(f[0]), Type: f[1]})
		return nil
	})
	if err == nil && first {
		err = errEmpty
	}
	return ss, err
}

// passwdEntry is the part of an /etc/passwd line the collectors use.
type passwdEntry struct {
	Name  string
	UID   int
	Home  string
	Shell string
}

// parsePasswd parses /etc/passwd. NIS "+"/"-" lines are skipped.
func parsePasswd(data []byte) ([]passwdEntry, error) {
	var us []passwdEntry
	err := lines(data, func(l string) error {
		if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
			return nil
		}
		f := strings.Split(l, ":")
		if len(f) != 7 {
			return fmt.Errorf("passwd: malformed line for %q", truncate(f[0]))
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || uid < 0 {
			return fmt.Errorf("passwd: bad uid for %q", truncate(f[0]))
		}
		us = append(us, passwdEntry{Name: f[0], UID: uid, Home: f[5], Shell: f[6]})
		return nil
	})
	return us, err
}

// parseShadow returns each user's password field from /etc/shadow.
func parseShadow(data []byte) (map[string]string, error) {
	m := map[string]string{}
	err := lines(data, func(l string) error {
		if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
			return nil
		}
		f := strings.Split(l, ":")
		if len(f) < 2 {
			return fmt.Errorf("shadow: malformed line for %q", truncate(f[0]))
		}
		m[f[0]] = f[1]
		return nil
	})
	return m, err
}

// usablePassword reports whether a shadow password field holds a password one can log in with:
// not empty (no password at all) and not locked or disabled ("!", "!!", "*", "!$6$...").
func usablePassword(hash string) bool {
	return hash != "" && hash[0] != '!' && hash[0] != '*'
}

// loginShell reports whether shell lets a user log in interactively.
func loginShell(shell string) bool {
	if shell == "" {
		return false
	}
	base := shell[strings.LastIndexByte(shell, '/')+1:]
	switch base {
	case "nologin", "false", "sync", "shutdown", "halt":
		return false
	}
	return true
}

// parseAptCheck parses the "UPGRADES;SECURITY" line that update-notifier's apt-check writes to
// stderr and returns the number of pending security updates.
func parseAptCheck(stderr []byte) (int, error) {
	if len(stderr) > maxInput {
		return 0, errTooLarge
	}
	s := strings.TrimSpace(string(stderr))
	// Python warnings may precede the answer; it is always the last line.
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	a, b, ok := strings.Cut(s, ";")
	up, err1 := strconv.Atoi(a)
	sec, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || up < 0 || sec < 0 || sec > up {
		return 0, fmt.Errorf("apt-check: unexpected output %q", truncate(s))
	}
	return sec, nil
}

// parseDnfSecurity counts the packages with pending security advisories in the output of
// `dnf -q updateinfo list --security` (dnf4: "ADVISORY SEVERITY/Sec. NEVRA"; dnf5: a header
// "Name Type Severity Package Issued" then "ADVISORY security SEVERITY NEVRA DATE TIME").
func parseDnfSecurity(out []byte) (int, error) {
	pkgs := map[string]bool{}
	err := lines(out, func(l string) error {
		f := strings.Fields(l)
		switch {
		case len(f) == 0, f[0] == "Name" && len(f) >= 4 && f[1] == "Type":
		case len(f) == 3 && strings.HasSuffix(f[1], "/Sec."):
			pkgs[f[2]] = true
		case len(f) >= 4 && f[1] == "security":
			pkgs[f[3]] = true
		case strings.HasPrefix(l, "Last metadata expiration check"), strings.HasPrefix(l, "Updating and loading repositories"), strings.HasPrefix(l, "Repositories loaded"):
		default:
			return fmt.Errorf("dnf updateinfo: unexpected line %q", truncate(l))
		}
		return nil
	})
	return len(pkgs), err
}

// parseFirewallCmdState parses `firewall-cmd --state`: "running" or "not running".
func parseFirewallCmdState(out []byte) (bool, error) {
	switch s := strings.TrimSpace(string(out)); s {
	case "running":
		return true, nil
	case "not running":
		return false, nil
	default:
		return false, fmt.Errorf("firewall-cmd: unexpected state %q", truncate(s))
	}
}

// parseNftRuleset reports whether `nft list ruleset` filters incoming traffic: some ip, ip6 or
// inet base chain hooked on input drops by policy or has a drop or reject rule. A ruleset that
// exists only for NAT or container forwarding (Docker's) is not a host firewall.
func parseNftRuleset(out []byte) (bool, error) {
	filtering := false
	family := ""
	depth := 0
	inInput := false
	err := lines(out, func(l string) error {
		f := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(l, ";", " ; "), "{", " { "))
		if len(f) == 0 {
			return nil
		}
		if f[0] == "table" && depth == 0 {
			if len(f) < 3 {
				return fmt.Errorf("nft: malformed table line %q", truncate(l))
			}
			family = f[1]
		}
		if f[0] == "chain" {
			inInput = false
		}
		if depth == 2 && f[0] == "type" && len(f) >= 4 && f[1] == "filter" && f[2] == "hook" && f[3] == "input" &&
			(family == "ip" || family == "ip6" || family == "inet") {
			inInput = true
		}
		if inInput {
			for i, w := range f {
				if (w == "drop" || w == "reject") || (w == "policy" && i+1 < len(f) && f[i+1] == "drop") {
					filtering = true
				}
			}
		}
		depth += strings.Count(l, "{") - strings.Count(l, "}")
		if depth < 0 || depth > 64 {
			return fmt.Errorf("nft: unbalanced braces")
		}
		if depth < 2 {
			inInput = false
		}
		return nil
	})
	if err == nil && depth != 0 {
		err = errors.New("nft: unbalanced braces (truncated output?)")
	}
	return filtering, err
}

// efiGlobalVariable is the vendor GUID of the UEFI global variables (SecureBoot, SetupMode).
const efiGlobalVariable = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// parseEFIBool parses a one-byte UEFI boolean variable as efivarfs presents it: four bytes of
// attributes, then the value.
func parseEFIBool(data []byte) (bool, error) {
	if len(data) != 5 {
		return false, fmt.Errorf("efivar: %d bytes, want 4 attribute bytes and 1 value byte", len(data))
	}
	switch data[4] {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("efivar: value %d is not a boolean", data[4])
}

// parseLockdown returns the selected mode from /sys/kernel/security/lockdown
// ("none [integrity] confidentiality").
func parseLockdown(data []byte) (string, error) {
	if len(data) > 256 {
		return "", errTooLarge
	}
	for _, w := range strings.Fields(string(data)) {
		if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
			switch m := w[1 : len(w)-1]; m {
			case "none", "integrity", "confidentiality":
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("lockdown: no selected mode in %q", truncate(string(data)))
}

// parseTainted parses /proc/sys/kernel/tainted: a bit mask, 0 when untainted.
func parseTainted(data []byte) (bool, error) {
	if len(data) > 64 {
		return false, errTooLarge
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return false, fmt.Errorf("tainted: %q is not a number", truncate(string(data)))
	}
	return n != 0, nil
}

// parseGsettingsBool parses `gsettings get ... BOOLEAN`.
func parseGsettingsBool(out []byte) (bool, error) {
	s := strings.TrimSpace(string(out))
	if s != "true" && s != "false" {
		return false, fmt.Errorf("gsettings: %q is not a boolean", truncate(s))
	}
	return s == "true", nil
}

// parseGsettingsUint parses `gsettings get ... UINT32` ("uint32 300").
func parseGsettingsUint(out []byte) (uint32, error) {
	if len(out) > 64 {
		return 0, errTooLarge
	}
	return parseGVariantUint(string(out))
}

// parseDconfLocks lists the keys locked by a dconf locks file (one absolute key path a line).
func parseDconfLocks(data []byte) ([]string, error) {
	var keys []string
	err := lines(data, func(l string) error {
		if l == "" || l[0] == '#' {
			return nil
		}
		if l[0] != '/' {
			return fmt.Errorf("dconf locks: %q is not a key path", truncate(l))
		}
		keys = append(keys, l)
		return nil
	})
	return keys, err
}

// parsePAMQuality finds the password-quality module in a PAM stack's "password" lines
// (pam_pwquality.so or pam_cracklib.so) and returns it with its key=value options; module is
// empty when the stack has none.
func parsePAMQuality(data []byte) (module string, args map[string]string) {
	_ = lines(data, func(l string) error {
		f := strings.Fields(l)
		if module != "" || len(f) < 3 || f[0] != "password" {
			return nil
		}
		// The control is a word ("requisite") or a bracketed list ("[success=1 default=ignore]").
		i := 2
		if strings.HasPrefix(f[1], "[") {
			for i = 1; i < len(f) && !strings.HasSuffix(f[i], "]"); i++ {
			}
			i++
		}
		if i >= len(f) {
			return nil
		}
		switch base := f[i][strings.LastIndexByte(f[i], '/')+1:]; base {
		case "pam_pwquality.so", "pam_cracklib.so":
			module, args = base, map[string]string{}
			for _, a := range f[i+1:] {
				if k, v, ok := strings.Cut(a, "="); ok {
					args[k] = v
				}
			}
		}
		return nil
	})
	return module, args
}

// passwordRules turns a quality module's settings into the rules it enforces. Positive
// "credits" let each character of a class count twice towards minlen, so the shortest password
// that passes is minlen less those credits; a negative credit requires that many characters of
// the class. Defaults are the modules' own: pwquality minlen 8 and no credits, cracklib minlen 9
// and a credit of 1 per class. Neither accepts a password shorter than 6.
func passwordRules(module string, conf map[string]string) policies.PasswordRules {
	num := func(key string, def int) int {
		if n, err := strconv.Atoi(strings.TrimSpace(conf[key])); err == nil {
			return n
		}
		return def
	}
	minlen, credit := 8, 0
	if module == "pam_cracklib.so" {
		minlen, credit = 9, 1
	}
	r := policies.PasswordRules{Enforced: true, MinClasses: max(num("minclass", 0), 0)}
	shortest, required := num("minlen", minlen), 0
	for _, class := range []string{"dcredit", "ucredit", "lcredit", "ocredit"} {
		switch c := num(class, credit); {
		case c > 0:
			shortest -= c
		case c < 0:
			required++
			switch class {
			case "dcredit":
				r.MinDigits = -c
			case "ucredit", "lcredit":
				r.MinLetters += -c
			case "ocredit":
				r.MinOther = -c
			}
		}
	}
	r.MinLength = max(shortest, 6)
	r.MinClasses = max(r.MinClasses, required)
	return r
}
