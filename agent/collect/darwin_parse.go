package collect

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/micromdm/plist"

	"github.com/halemdm/hale/policies"
)

// Parsers of macOS tool output. They are untagged so they are tested and fuzzed on every OS.

// parseFdesetupStatus parses `fdesetup status`. The volume counts as encrypted only when
// FileVault is on and no encryption or decryption is still in progress.
func parseFdesetupStatus(out []byte) (bool, error) {
	if len(out) > maxInput {
		return false, errTooLarge
	}
	s := strings.TrimSpace(string(out))
	switch {
	case strings.Contains(s, "Encryption in progress"), strings.Contains(s, "Decryption in progress"):
		return false, nil
	case strings.HasPrefix(s, "FileVault is On."):
		return true, nil
	case strings.HasPrefix(s, "FileVault is Off"):
		return false, nil
	}
	return false, fmt.Errorf("fdesetup: unexpected output %q", truncate(s))
}

// parseSwVers parses `sw_vers` ("ProductVersion:\t14.5", "BuildVersion:\t23F79").
func parseSwVers(out []byte) (policies.OSInfo, error) {
	var info policies.OSInfo
	err := lines(out, func(l string) error {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil
		}
		switch strings.TrimSpace(k) {
		case "ProductVersion":
			info.Version = strings.TrimSpace(v)
		case "BuildVersion":
			info.Build = strings.TrimSpace(v)
		}
		return nil
	})
	if err == nil && !validVersion(info.Version) {
		err = fmt.Errorf("sw_vers: no valid ProductVersion in output")
	}
	return info, err
}

// validVersion accepts dotted numeric versions ("14", "14.5", "14.5.1").
func validVersion(v string) bool {
	if v == "" || len(v) > 32 {
		return false
	}
	for _, part := range strings.Split(v, ".") {
		if _, err := strconv.ParseUint(part, 10, 32); err != nil {
			return false
		}
	}
	return true
}

// parseSocketfilterfw parses `socketfilterfw --getglobalstate`
// ("Firewall is enabled. (State = 1)"); state 1 (on) and 2 (block all) are enabled.
func parseSocketfilterfw(out []byte) (bool, error) {
	if len(out) > maxInput {
		return false, errTooLarge
	}
	s := strings.TrimSpace(string(out))
	if _, rest, ok := strings.Cut(s, "(State = "); ok {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), ")"))
		if err == nil && n >= 0 && n <= 2 {
			return n > 0, nil
		}
	}
	switch {
	case strings.HasPrefix(s, "Firewall is enabled"), strings.HasPrefix(s, "Firewall is blocking"):
		return true, nil
	case strings.HasPrefix(s, "Firewall is disabled"):
		return false, nil
	}
	return false, fmt.Errorf("socketfilterfw: unexpected output %q", truncate(s))
}

// parseCsrutilStatus parses `csrutil status`. A custom configuration (some protections turned
// off) is not enabled.
func parseCsrutilStatus(out []byte) (bool, error) {
	if len(out) > maxInput {
		return false, errTooLarge
	}
	s := strings.TrimSpace(string(out))
	_, rest, ok := strings.Cut(s, "System Integrity Protection status:")
	if ok {
		rest = strings.TrimSpace(rest)
		switch {
		case strings.HasPrefix(rest, "enabled."):
			return true, nil
		case strings.HasPrefix(rest, "disabled."), strings.HasPrefix(rest, "unknown"),
			strings.HasPrefix(rest, "enabled (Custom Configuration)"):
			return false, nil
		}
	}
	return false, fmt.Errorf("csrutil: unexpected output %q", truncate(s))
}

// parseSpctlStatus parses `spctl --status` ("assessments enabled").
func parseSpctlStatus(out []byte) (bool, error) {
	switch s := strings.TrimSpace(string(out)); s {
	case "assessments enabled":
		return true, nil
	case "assessments disabled":
		return false, nil
	default:
		return false, fmt.Errorf("spctl: unexpected output %q", truncate(s))
	}
}

// parseSysadminctlScreenLock parses what `sysadminctl -screenLock status` logs to stderr:
// "... screenLock delay is 300 seconds", "... screenLock delay is immediate" or
// "... screenLock is off". It returns whether a password is asked and after what delay.
func parseSysadminctlScreenLock(stderr []byte) (bool, time.Duration, error) {
	var on, found bool
	var delay time.Duration
	err := lines(stderr, func(l string) error {
		_, rest, ok := strings.Cut(l, "screenLock ")
		if !ok {
			return nil
		}
		switch {
		case rest == "is off":
			on, delay, found = false, 0, true
		case rest == "delay is immediate":
			on, delay, found = true, 0, true
		case strings.HasPrefix(rest, "delay is ") && strings.HasSuffix(rest, " seconds"):
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(rest, "delay is "), " seconds"), 10, 32)
			if err != nil {
				return fmt.Errorf("sysadminctl: bad delay in %q", truncate(l))
			}
			on, delay, found = true, time.Duration(n)*time.Second, true
		}
		return nil
	})
	if err == nil && !found {
		err = errors.New("sysadminctl: no screenLock status in output")
	}
	return on, delay, err
}

// screensaverPrefs are the com.apple.screensaver settings that decide screen locking; nil
// fields are not set.
type screensaverPrefs struct {
	IdleTime            *int64 // seconds until the screen saver starts; 0 never
	AskForPassword      *bool
	AskForPasswordDelay *int64 // seconds after the screen saver starts
}

// parseScreensaverPlist parses a com.apple.screensaver plist (XML from `defaults export`, or a
// binary managed-preferences file).
func parseScreensaverPlist(data []byte) (prefs screensaverPrefs, err error) {
	if len(data) > maxInput {
		return prefs, errTooLarge
	}
	defer func() {
		// The plist decoder is a third-party parser fed hostile bytes: contain any panic.
		if r := recover(); r != nil {
			prefs, err = screensaverPrefs{}, fmt.Errorf("plist: malformed (%v)", r)
		}
	}()
	var m map[string]any
	if err := plist.Unmarshal(data, &m); err != nil {
		return prefs, fmt.Errorf("plist: %w", err)
	}
	if v, ok := m["idleTime"]; ok {
		n, ok := plistInt(v)
		if !ok || n < 0 {
			return prefs, fmt.Errorf("plist: idleTime %v is not a number of seconds", v)
		}
		prefs.IdleTime = &n
	}
	if v, ok := m["askForPassword"]; ok {
		var b bool
		switch x := v.(type) {
		case bool:
			b = x
		default:
			n, ok := plistInt(v)
			if !ok {
				return prefs, fmt.Errorf("plist: askForPassword %v is not a boolean", v)
			}
			b = n != 0
		}
		prefs.AskForPassword = &b
	}
	if v, ok := m["askForPasswordDelay"]; ok {
		n, ok := plistInt(v)
		if !ok || n < 0 {
			return prefs, fmt.Errorf("plist: askForPasswordDelay %v is not a number of seconds", v)
		}
		prefs.AskForPasswordDelay = &n
	}
	return prefs, nil
}

// plistInt converts a plist number to whole seconds.
func plistInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt32 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != x || x < math.MinInt32 || x > math.MaxInt32 {
			return 0, false
		}
		return int64(x), true
	case float32:
		return plistInt(float64(x))
	}
	return 0, false
}

// macScreenLock combines the screen saver start (idleTime) with the password delay. Managed
// (profile-installed) values win over the user's own.
func macScreenLock(managed, user screensaverPrefs, sysadminOn bool, sysadminDelay time.Duration, haveSysadmin bool) (screenLock, error) {
	idle := managed.IdleTime
	if idle == nil {
		idle = user.IdleTime
	}
	if idle == nil {
		return screenLock{}, errors.New("screen saver idle time is not set (neither managed nor by the user)")
	}
	var on bool
	var delay time.Duration
	switch {
	case managed.AskForPassword != nil:
		on = *managed.AskForPassword
		if managed.AskForPasswordDelay != nil {
			delay = time.Duration(*managed.AskForPasswordDelay) * time.Second
		}
	case haveSysadmin:
		on, delay = sysadminOn, sysadminDelay
	default:
		return screenLock{}, errors.New("whether the screen saver asks for a password is unknown")
	}
	if !on || *idle == 0 {
		return screenLock{}, nil
	}
	return screenLock{Enabled: true, Timeout: time.Duration(*idle)*time.Second + delay}, nil
}

// overlayPrefs sets in dst every preference set in src.
func overlayPrefs(dst *screensaverPrefs, src screensaverPrefs) {
	if src.IdleTime != nil {
		dst.IdleTime = src.IdleTime
	}
	if src.AskForPassword != nil {
		dst.AskForPassword = src.AskForPassword
	}
	if src.AskForPasswordDelay != nil {
		dst.AskForPasswordDelay = src.AskForPasswordDelay
	}
}
