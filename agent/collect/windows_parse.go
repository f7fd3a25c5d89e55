package collect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/policies"
)

// Parsers of Windows tool output. They are untagged so they are tested and fuzzed on every OS.

// jsonList decodes PowerShell's ConvertTo-Json output, which is a bare object for one item and
// an array for several.
func jsonList[T any](out []byte) ([]T, error) {
	if len(out) > maxInput {
		return nil, errTooLarge
	}
	out = bytes.TrimSpace(bytes.TrimPrefix(out, []byte("\xef\xbb\xbf")))
	if len(out) == 0 {
		return nil, errEmpty
	}
	var items []T
	if out[0] == '[' {
		if err := json.Unmarshal(out, &items); err != nil {
			return nil, err
		}
		return items, nil
	}
	var one T
	if err := json.Unmarshal(out, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}

// parseBitLockerJSON parses Win32_EncryptableVolume instances (DriveLetter, ProtectionStatus as
// JSON) and reports whether the system drive is protected: ProtectionStatus 1. Status 2
// (unknown, the volume is locked) is an error, not "off".
func parseBitLockerJSON(out []byte, systemDrive string) (bool, error) {
	type volume struct {
		DriveLetter      *string
		ProtectionStatus *int
	}
	vols, err := jsonList[volume](out)
	if err != nil {
		return false, fmt.Errorf("bitlocker: %w", err)
	}
	for _, v := range vols {
		if v.DriveLetter == nil || !strings.EqualFold(*v.DriveLetter, systemDrive) {
			continue
		}
		if v.ProtectionStatus == nil {
			return false, errors.New("bitlocker: system volume has no ProtectionStatus")
		}
		switch *v.ProtectionStatus {
		case 0:
			return false, nil
		case 1:
			return true, nil
		default:
			return false, fmt.Errorf("bitlocker: protection status of %s is unknown (%d)", systemDrive, *v.ProtectionStatus)
		}
	}
	return false, fmt.Errorf("bitlocker: no encryptable volume %s (BitLocker not available?)", truncate(systemDrive))
}

// parseFirewallProfilesJSON parses Get-NetFirewallProfile | Select-Object Name,Enabled as JSON
// and reports whether every profile is on. Enabled is a GpoBoolean: 1 (or true) is on.
func parseFirewallProfilesJSON(out []byte) (bool, error) {
	type profile struct {
		Name    string
		Enabled json.RawMessage
	}
	ps, err := jsonList[profile](out)
	if err != nil {
		return false, fmt.Errorf("firewall profiles: %w", err)
	}
	if len(ps) == 0 {
		return false, errors.New("firewall profiles: none")
	}
	all := true
	for _, p := range ps {
		var on bool
		switch s := strings.Trim(string(p.Enabled), `"`); s {
		case "1", "true", "True":
			on = true
		case "0", "false", "False", "2", "NotConfigured":
		default:
			return false, fmt.Errorf("firewall profile %q: Enabled %q is not a GpoBoolean", truncate(p.Name), truncate(s))
		}
		all = all && on
	}
	return all, nil
}

// regValue is one value from `reg query`.
type regValue struct {
	Type, Data string
}

// parseRegQuery parses `reg query KEY` output:
//
//	HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion
//	    CurrentBuild    REG_SZ    22631
//	    UBR    REG_DWORD    0xd77
func parseRegQuery(out []byte) (map[string]regValue, error) {
	vals := map[string]regValue{}
	key := false
	err := lines(out, func(l string) error {
		if strings.HasPrefix(l, "HKEY_") {
			key = true
			return nil
		}
		i := strings.Index(l, "    REG_")
		if i <= 0 {
			return nil
		}
		name := strings.TrimSpace(l[:i])
		typ, data, _ := strings.Cut(strings.TrimSpace(l[i:]), "    ")
		vals[name] = regValue{Type: strings.TrimSpace(typ), Data: strings.TrimSpace(data)}
		return nil
	})
	if err == nil && !key {
		err = errors.New("reg query: no key in output")
	}
	return vals, err
}

// dword returns a REG_DWORD's value.
func (v regValue) dword() (uint32, error) {
	if v.Type != "REG_DWORD" {
		return 0, fmt.Errorf("registry value is %s, want REG_DWORD", truncate(v.Type))
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(v.Data, "0x"), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("registry value %q is not a DWORD", truncate(v.Data))
	}
	return uint32(n), nil
}

// windowsOSInfo builds the version from HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion:
// Version "10.0.22631", Build "22631.3447" (build and update build revision).
func windowsOSInfo(vals map[string]regValue) (policies.OSInfo, error) {
	build := vals["CurrentBuild"].Data
	if _, err := strconv.ParseUint(build, 10, 32); err != nil {
		return policies.OSInfo{}, fmt.Errorf("CurrentBuild %q is not a number", truncate(build))
	}
	major, err1 := vals["CurrentMajorVersionNumber"].dword()
	minor, err2 := vals["CurrentMinorVersionNumber"].dword()
	if err1 != nil || err2 != nil {
		// Windows before 10 has only CurrentVersion ("6.3").
		cv := vals["CurrentVersion"].Data
		if !validVersion(cv) {
			return policies.OSInfo{}, errors.New("no CurrentMajorVersionNumber or CurrentVersion")
		}
		ma, mi, _ := strings.Cut(cv, ".")
		m1, _ := strconv.ParseUint(ma, 10, 32)
		m2, _ := strconv.ParseUint(mi, 10, 32)
		major, minor = uint32(m1), uint32(m2)
	}
	info := policies.OSInfo{Version: fmt.Sprintf("%d.%d.%s", major, minor, build), Build: build}
	if ubr, err := vals["UBR"].dword(); err == nil {
		info.Build = fmt.Sprintf("%s.%d", build, ubr)
	}
	return info, nil
}

// inactivityLock reads the "Interactive logon: Machine inactivity limit" policy
// (InactivityTimeoutSecs under HKLM\...\Policies\System): the session locks after that many
// seconds; 0 disables it.
func inactivityLock(vals map[string]regValue) (screenLock, error) {
	v, ok := vals["InactivityTimeoutSecs"]
	if !ok {
		return screenLock{}, errors.New("InactivityTimeoutSecs is not set")
	}
	n, err := v.dword()
	if err != nil {
		return screenLock{}, err
	}
	if n == 0 {
		return screenLock{}, nil
	}
	return screenLock{Enabled: true, Timeout: time.Duration(n) * time.Second}, nil
}

// parseBcdedit reports whether `bcdedit /enum {current}` shows test signing or disabled
// integrity checks, either of which lets unsigned kernel code load.
func parseBcdedit(out []byte) (bool, error) {
	weakened, seen := false, false
	err := lines(out, func(l string) error {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil
		}
		switch strings.ToLower(f[0]) {
		case "identifier":
			seen = true
		case "testsigning", "nointegritychecks":
			on, err := parseBoolWord(f[1])
			if err != nil {
				return fmt.Errorf("bcdedit: %s: %w", f[0], err)
			}
			weakened = weakened || on
		}
		return nil
	})
	if err == nil && !seen {
		err = errors.New("bcdedit: no boot entry in output (not run as administrator?)")
	}
	return weakened, err
}

// parseConfirmSecureBoot parses Confirm-SecureBootUEFI's "True" or "False".
func parseConfirmSecureBoot(out []byte) (bool, error) {
	switch s := strings.TrimSpace(string(out)); s {
	case "True":
		return true, nil
	case "False":
		return false, nil
	default:
		return false, fmt.Errorf("Confirm-SecureBootUEFI: unexpected output %q", truncate(s))
	}
}

// windowsPassword is what the windows-password collector's script prints: the enabled local
// users (Get-LocalUser) and the local security policy as secedit exports it (an INF text).
type windowsPassword struct {
	Users  json.RawMessage `json:"users"`
	Policy string          `json:"policy"`
}

// parseWindowsPassword reports whether every enabled local user must have a password, and the
// rules the local security policy sets for new ones. Windows enforces its local policy itself,
// so the rules are always enforced; complexity (three of upper, lower, digit, other) is
// MinClasses 3. With no enabled local user the first answer is unknown (nil).
func parseWindowsPassword(out []byte) (present *bool, rules policies.PasswordRules, err error) {
	if len(out) > maxInput {
		return nil, rules, errTooLarge
	}
	var w windowsPassword
	if err := json.Unmarshal(bytes.TrimPrefix(bytes.TrimSpace(out), []byte("\xef\xbb\xbf")), &w); err != nil {
		return nil, rules, fmt.Errorf("windows password: %w", err)
	}
	type user struct {
		Name             string
		PasswordRequired *bool
	}
	if users, err := jsonList[user](w.Users); err == nil && len(users) > 0 {
		all := true
		for _, u := range users {
			all = all && u.PasswordRequired != nil && *u.PasswordRequired
		}
		present = &all
	} else if err != nil && !errors.Is(err, errEmpty) && string(bytes.TrimSpace(w.Users)) != "[]" && string(bytes.TrimSpace(w.Users)) != "null" {
		return nil, rules, fmt.Errorf("windows password: users: %w", err)
	}
	inf, err := parseINI([]byte(w.Policy))
	if err != nil {
		return nil, rules, fmt.Errorf("windows password: policy: %w", err)
	}
	length, ok := inf.get("System Access", "MinimumPasswordLength")
	if !ok {
		return nil, rules, errors.New("windows password: the local security policy has no MinimumPasswordLength (secedit export failed?)")
	}
	n, err := strconv.Atoi(length)
	if err != nil || n < 0 || n > 1024 {
		return nil, rules, fmt.Errorf("windows password: MinimumPasswordLength %q", truncate(length))
	}
	rules = policies.PasswordRules{Enforced: true, MinLength: n}
	if c, _ := inf.get("System Access", "PasswordComplexity"); c == "1" {
		rules.MinClasses = 3
	}
	return present, rules, nil
}
