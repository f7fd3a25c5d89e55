package collect

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

// boolCase is a recorded output and the answer its parser must give.
type boolCase struct {
	file    string
	want    bool
	wantErr bool
}

func testBoolParser(t *testing.T, parse func([]byte) (bool, error), cases []boolCase) {
	t.Helper()
	for _, c := range cases {
		got, err := parse(tool(t, c.file))
		if (err != nil) != c.wantErr {
			t.Errorf("%s: err = %v, want error %v", c.file, err, c.wantErr)
			continue
		}
		if err == nil && got != c.want {
			t.Errorf("%s: got %v, want %v", c.file, got, c.want)
		}
	}
}

func TestParseAptCheck(t *testing.T) {
	for _, c := range []struct {
		file    string
		want    int
		wantErr bool
	}{
		{"apt-check/ubuntu-3-of-12.txt", 3, false},
		{"apt-check/none.txt", 0, false},
		{"apt-check/python-warning.txt", 17, false},
		{"apt-check/garbage.txt", 0, true},
		{"apt-check/inconsistent.txt", 0, true},
	} {
		got, err := parseAptCheck(tool(t, c.file))
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("%s: got %d, %v; want %d, error %v", c.file, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseDnfSecurity(t *testing.T) {
	for _, c := range []struct {
		file    string
		want    int
		wantErr bool
	}{
		{"dnf/dnf4.txt", 3, false},
		{"dnf/dnf5.txt", 2, false},
		{"dnf/empty.txt", 0, false},
		{"dnf/garbage.txt", 0, true},
	} {
		got, err := parseDnfSecurity(tool(t, c.file))
		if (err != nil) != c.wantErr || (err == nil && got != c.want) {
			t.Errorf("%s: got %d, %v; want %d, error %v", c.file, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseFirewallCmdState(t *testing.T) {
	testBoolParser(t, parseFirewallCmdState, []boolCase{
		{"firewall-cmd/running.txt", true, false},
		{"firewall-cmd/not-running.txt", false, false},
		{"firewall-cmd/garbage.txt", false, true},
	})
}

func TestParseNftRuleset(t *testing.T) {
	testBoolParser(t, parseNftRuleset, []boolCase{
		{"nft/ufw.txt", true, false},
		{"nft/firewalld.txt", true, false},
		{"nft/docker-only.txt", false, false},
		{"nft/empty.txt", false, false},
		{"nft/netdev-drop.txt", false, false},
		{"nft/truncated.txt", false, true},
	})
}

func TestParseFdesetup(t *testing.T) {
	testBoolParser(t, parseFdesetupStatus, []boolCase{
		{"fdesetup/on.txt", true, false},
		{"fdesetup/off.txt", false, false},
		{"fdesetup/encrypting.txt", false, false},
		{"fdesetup/deferred.txt", false, false},
		{"fdesetup/garbage.txt", false, true},
	})
}

func TestParseSocketfilterfw(t *testing.T) {
	testBoolParser(t, parseSocketfilterfw, []boolCase{
		{"socketfilterfw/enabled.txt", true, false},
		{"socketfilterfw/disabled.txt", false, false},
		{"socketfilterfw/block-all.txt", true, false},
		{"socketfilterfw/garbage.txt", false, true},
	})
}

func TestParseCsrutil(t *testing.T) {
	testBoolParser(t, parseCsrutilStatus, []boolCase{
		{"csrutil/enabled.txt", true, false},
		{"csrutil/disabled.txt", false, false},
		{"csrutil/custom.txt", false, false},
		{"csrutil/garbage.txt", false, true},
	})
}

func TestParseSpctl(t *testing.T) {
	testBoolParser(t, parseSpctlStatus, []boolCase{
		{"spctl/enabled.txt", true, false},
		{"spctl/disabled.txt", false, false},
		{"spctl/garbage.txt", false, true},
	})
}

func TestParseConfirmSecureBoot(t *testing.T) {
	testBoolParser(t, parseConfirmSecureBoot, []boolCase{
		{"secureboot/true.txt", true, false},
		{"secureboot/false.txt", false, false},
		{"secureboot/garbage.txt", false, true},
	})
}

func TestParseBcdedit(t *testing.T) {
	testBoolParser(t, parseBcdedit, []boolCase{
		{"bcdedit/normal.txt", false, false},
		{"bcdedit/testsigning.txt", true, false},
		{"bcdedit/nointegritychecks.txt", true, false},
		{"bcdedit/garbage.txt", false, true},
	})
}

func TestParseBitLocker(t *testing.T) {
	testBoolParser(t, func(b []byte) (bool, error) { return parseBitLockerJSON(b, "C:") }, []boolCase{
		{"bitlocker/on-single.json", true, false},
		{"bitlocker/c-off-d-on.json", false, false},
		{"bitlocker/locked.json", false, true},
		{"bitlocker/no-system.json", false, true},
		{"bitlocker/garbage.json", false, true},
	})
}

func TestParseFirewallProfiles(t *testing.T) {
	testBoolParser(t, parseFirewallProfilesJSON, []boolCase{
		{"firewall-profiles/all-on.json", true, false},
		{"firewall-profiles/public-off.json", false, false},
		{"firewall-profiles/bools.json", true, false},
		{"firewall-profiles/garbage.json", false, true},
	})
}

func TestParseSwVers(t *testing.T) {
	for _, c := range []struct {
		file    string
		want    policies.OSInfo
		wantErr bool
	}{
		{"sw_vers/sonoma.txt", policies.OSInfo{Version: "14.5", Build: "23F79"}, false},
		{"sw_vers/sequoia.txt", policies.OSInfo{Version: "15.1.1", Build: "24B91"}, false},
		{"sw_vers/garbage.txt", policies.OSInfo{}, true},
	} {
		got, err := parseSwVers(tool(t, c.file))
		if (err != nil) != c.wantErr || (err == nil && got != c.want) {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", c.file, got, err, c.want, c.wantErr)
		}
	}
}

func TestParseSysadminctl(t *testing.T) {
	for _, c := range []struct {
		file    string
		on      bool
		delay   time.Duration
		wantErr bool
	}{
		{"sysadminctl/300.txt", true, 300 * time.Second, false},
		{"sysadminctl/immediate.txt", true, 0, false},
		{"sysadminctl/off.txt", false, 0, false},
		{"sysadminctl/garbage.txt", false, 0, true},
	} {
		on, d, err := parseSysadminctlScreenLock(tool(t, c.file))
		if (err != nil) != c.wantErr || on != c.on || d != c.delay {
			t.Errorf("%s: got %v %v %v; want %v %v error %v", c.file, on, d, err, c.on, c.delay, c.wantErr)
		}
	}
}

func TestMacScreenLock(t *testing.T) {
	user, err := parseScreensaverPlist(tool(t, "screensaver/user-export.plist"))
	if err != nil || user.IdleTime == nil || *user.IdleTime != 600 || user.AskForPassword != nil {
		t.Fatalf("user plist: %+v, %v", user, err)
	}
	managed, err := parseScreensaverPlist(tool(t, "screensaver/managed.plist"))
	if err != nil || managed.IdleTime == nil || *managed.IdleTime != 300 || managed.AskForPassword == nil || !*managed.AskForPassword {
		t.Fatalf("managed plist: %+v, %v", managed, err)
	}
	if _, err := parseScreensaverPlist(tool(t, "screensaver/bad-idle.plist")); err == nil {
		t.Error("bad idleTime accepted")
	}
	if _, err := parseScreensaverPlist(tool(t, "screensaver/garbage.plist")); err == nil {
		t.Error("garbage accepted")
	}
	empty, err := parseScreensaverPlist(tool(t, "screensaver/empty-dict.plist"))
	if err != nil {
		t.Fatal(err)
	}

	// Managed settings win: 300 s idle + 5 s password delay. A user-level managed file
	// overrides the computer-level one key by key.
	var merged screensaverPrefs
	overlayPrefs(&merged, managed)
	overlayPrefs(&merged, empty)
	if merged.IdleTime == nil || *merged.IdleTime != 300 || merged.AskForPasswordDelay == nil {
		t.Errorf("overlay lost keys: %+v", merged)
	}
	overlayPrefs(&merged, user)
	if *merged.IdleTime != 600 || merged.AskForPassword == nil {
		t.Errorf("overlay: %+v", merged)
	}
	sl, err := macScreenLock(managed, user, false, 0, true)
	if err != nil || !sl.Enabled || sl.Timeout != 305*time.Second {
		t.Errorf("managed: %+v, %v", sl, err)
	}
	// The user's own settings: 600 s idle, sysadminctl says 300 s delay.
	sl, err = macScreenLock(empty, user, true, 300*time.Second, true)
	if err != nil || !sl.Enabled || sl.Timeout != 900*time.Second {
		t.Errorf("user: %+v, %v", sl, err)
	}
	// Screen lock off.
	sl, err = macScreenLock(empty, user, false, 0, true)
	if err != nil || sl.Enabled {
		t.Errorf("off: %+v, %v", sl, err)
	}
	// Nothing known: unknown, not false.
	if _, err := macScreenLock(empty, empty, true, 0, true); err == nil {
		t.Error("no idle time gave an answer")
	}
	if _, err := macScreenLock(empty, user, false, 0, false); err == nil {
		t.Error("unknown password setting gave an answer")
	}
}

func TestWindowsRegistry(t *testing.T) {
	vals, err := parseRegQuery(tool(t, "reg/currentversion-win11.txt"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := windowsOSInfo(vals)
	if want := (policies.OSInfo{Version: "10.0.22631", Build: "22631.3447"}); err != nil || info != want {
		t.Errorf("win11: %+v, %v; want %+v", info, err, want)
	}
	vals, _ = parseRegQuery(tool(t, "reg/currentversion-win81.txt"))
	info, err = windowsOSInfo(vals)
	if want := (policies.OSInfo{Version: "6.3.9600", Build: "9600"}); err != nil || info != want {
		t.Errorf("win8.1: %+v, %v; want %+v", info, err, want)
	}
	vals, _ = parseRegQuery(tool(t, "reg/inactivity-900.txt"))
	sl, err := inactivityLock(vals)
	if err != nil || !sl.Enabled || sl.Timeout != 15*time.Minute {
		t.Errorf("inactivity 900: %+v, %v", sl, err)
	}
	vals, _ = parseRegQuery(tool(t, "reg/inactivity-0.txt"))
	if sl, err := inactivityLock(vals); err != nil || sl.Enabled {
		t.Errorf("inactivity 0: %+v, %v", sl, err)
	}
	if _, err := parseRegQuery(tool(t, "reg/garbage.txt")); err == nil {
		t.Error("garbage reg output accepted")
	}
}

func TestParseLinuxFiles(t *testing.T) {
	if on, err := parseEFIBool([]byte{6, 0, 0, 0, 1}); err != nil || !on {
		t.Errorf("SecureBoot 1: %v %v", on, err)
	}
	if _, err := parseEFIBool([]byte{6, 0, 0, 0, 1, 0}); err == nil {
		t.Error("6-byte variable accepted")
	}
	if _, err := parseEFIBool([]byte{6, 0, 0, 0, 7}); err == nil {
		t.Error("value 7 accepted")
	}
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none integrity [confidentiality]\n": "confidentiality",
	} {
		if got, err := parseLockdown([]byte(in)); err != nil || got != want {
			t.Errorf("lockdown %q: %q, %v", in, got, err)
		}
	}
	if _, err := parseLockdown([]byte("none integrity confidentiality")); err == nil {
		t.Error("lockdown without a selection accepted")
	}
	if tt, err := parseTainted([]byte("4097\n")); err != nil || !tt {
		t.Errorf("tainted: %v %v", tt, err)
	}
	if _, err := parseTainted([]byte("-1")); err == nil {
		t.Error("negative taint accepted")
	}
	if v, err := parseGsettingsUint([]byte("uint32 300\n")); err != nil || v != 300 {
		t.Errorf("gsettings uint: %v %v", v, err)
	}
	if _, err := parseGsettingsBool([]byte("'true'")); err == nil {
		t.Error("quoted gsettings bool accepted")
	}
	ms, err := parseMountinfo([]byte(`36 35 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue` + "\n"))
	if err != nil || len(ms) != 1 || ms[0].MountPoint != "/mnt with space" || ms[0].Major != 98 || ms[0].Source != "/dev/root" {
		t.Errorf("mountinfo: %+v %v", ms, err)
	}
	if _, err := parseMountinfo([]byte("36 35 98:0 / / rw - ext4\n")); err == nil {
		t.Error("short mountinfo line accepted")
	}
	if _, err := parseSwaps([]byte("/dev/sda3 partition 1 0 -2\n")); err == nil {
		t.Error("swaps without header accepted")
	}
	for hash, want := range map[string]bool{"": false, "!": false, "!!": false, "*": false, "!$6$x$y": false, "$y$j9T$a$b": true} {
		if usablePassword(hash) != want {
			t.Errorf("usablePassword(%q) != %v", hash, want)
		}
	}
	kv, err := parseKeyValue([]byte("ID=ubuntu\nVERSION_ID=\"24.04\"\nNAME='x y'\nESC=\"a\\\"b\"\n# c\njunk\n"))
	if err != nil || kv["ID"] != "ubuntu" || kv["VERSION_ID"] != "24.04" || kv["NAME"] != "x y" || kv["ESC"] != `a"b` {
		t.Errorf("key=value: %v %v", kv, err)
	}
}

func FuzzParseAptCheck(f *testing.F) {
	seeds(f, "apt-check")
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseAptCheck(b); err == nil && n < 0 {
			t.Fatal("negative count")
		}
	})
}

func FuzzParseDnfSecurity(f *testing.F) {
	seeds(f, "dnf")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseDnfSecurity(b) })
}

func FuzzParseFirewallCmdState(f *testing.F) {
	seeds(f, "firewall-cmd")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseFirewallCmdState(b) })
}

func FuzzParseNftRuleset(f *testing.F) {
	seeds(f, "nft")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseNftRuleset(b) })
}

func FuzzParseFdesetup(f *testing.F) {
	seeds(f, "fdesetup")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseFdesetupStatus(b) })
}

func FuzzParseSwVers(f *testing.F) {
	seeds(f, "sw_vers")
	f.Fuzz(func(t *testing.T, b []byte) {
		if info, err := parseSwVers(b); err == nil && !validVersion(info.Version) {
			t.Fatalf("accepted version %q", info.Version)
		}
	})
}

func FuzzParseSocketfilterfw(f *testing.F) {
	seeds(f, "socketfilterfw")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseSocketfilterfw(b) })
}

func FuzzParseCsrutil(f *testing.F) {
	seeds(f, "csrutil")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseCsrutilStatus(b) })
}

func FuzzParseSpctl(f *testing.F) {
	seeds(f, "spctl")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseSpctlStatus(b) })
}

func FuzzParseSysadminctl(f *testing.F) {
	seeds(f, "sysadminctl")
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, d, err := parseSysadminctlScreenLock(b); err == nil && d < 0 {
			t.Fatal("negative delay")
		}
	})
}

func FuzzParseScreensaverPlist(f *testing.F) {
	seeds(f, "screensaver")
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseScreensaverPlist(b)
		if err == nil && (p.IdleTime != nil && *p.IdleTime < 0 || p.AskForPasswordDelay != nil && *p.AskForPasswordDelay < 0) {
			t.Fatal("negative seconds accepted")
		}
	})
}

func FuzzParseBitLocker(f *testing.F) {
	seeds(f, "bitlocker")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseBitLockerJSON(b, "C:") })
}

func FuzzParseFirewallProfiles(f *testing.F) {
	seeds(f, "firewall-profiles")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseFirewallProfilesJSON(b) })
}

func FuzzParseRegQuery(f *testing.F) {
	seeds(f, "reg")
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := parseRegQuery(b)
		if err != nil {
			return
		}
		_, _ = windowsOSInfo(vals)
		if sl, err := inactivityLock(vals); err == nil && sl.Timeout < 0 {
			t.Fatal("negative timeout")
		}
	})
}

func FuzzParseBcdedit(f *testing.F) {
	seeds(f, "bcdedit")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseBcdedit(b) })
}

func FuzzParseConfirmSecureBoot(f *testing.F) {
	seeds(f, "secureboot")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseConfirmSecureBoot(b) })
}

func FuzzParseMountinfo(f *testing.F) {
	rootSeeds(f, "proc/self/mountinfo")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseMountinfo(b) })
}

func FuzzParseSwaps(f *testing.F) {
	rootSeeds(f, "proc/swaps")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseSwaps(b) })
}

func FuzzParsePasswd(f *testing.F) {
	rootSeeds(f, "etc/passwd")
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := parsePasswd(b)
		for _, u := range us {
			if err == nil && u.UID < 0 {
				t.Fatal("negative uid")
			}
		}
	})
}

func FuzzParseShadow(f *testing.F) {
	rootSeeds(f, "etc/shadow")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseShadow(b) })
}

func FuzzParseKeyValue(f *testing.F) {
	rootSeeds(f, "etc/os-release")
	rootSeeds(f, "etc/ufw/ufw.conf")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseKeyValue(b) })
}

func FuzzParseINI(f *testing.F) {
	rootSeeds(f, "home/bob/.config/kscreenlockerrc")
	rootSeeds(f, "etc/dconf/db/local.d/00-screensaver")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseINI(b) })
}

func FuzzParseDconfLocks(f *testing.F) {
	rootSeeds(f, "etc/dconf/db/local.d/locks/screensaver")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseDconfLocks(b) })
}

func FuzzParseSmallFiles(f *testing.F) {
	rootSeeds(f, "sys/kernel/security/lockdown")
	rootSeeds(f, "proc/sys/kernel/tainted")
	f.Add([]byte{6, 0, 0, 0, 1})
	f.Add([]byte("uint32 300\n"))
	f.Add([]byte("true\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseLockdown(b)
		_, _ = parseTainted(b)
		_, _ = parseEFIBool(b)
		_, _ = parseGsettingsBool(b)
		_, _ = parseGsettingsUint(b)
		_ = unescapeOctal(string(b))
	})
}

// A PAM stack never yields rules weaker than the modules' own floor of 6 characters.
func FuzzParsePAMQuality(f *testing.F) {
	f.Add([]byte("password requisite pam_pwquality.so retry=3 minlen=-40 dcredit=99\n"))
	f.Add([]byte("password [success=1 default=ignore pam_unix.so\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if module, args := parsePAMQuality(b); module != "" {
			if r := passwordRules(module, args); r.MinLength < 6 || r.MinClasses < 0 || r.MinOther < 0 {
				t.Fatalf("rules %+v", r)
			}
		}
	})
}

func TestParseWindowsPassword(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		file    string
		present *bool
		rules   policies.PasswordRules
		wantErr bool
	}{
		{"windows-password/strict.json", &yes, policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 3}, false},
		{"windows-password/weak.json", &no, policies.PasswordRules{Enforced: true}, false},
		{"windows-password/no-policy.json", nil, policies.PasswordRules{}, true},
		{"windows-password/garbage.json", nil, policies.PasswordRules{}, true},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "tools", c.file))
		if err != nil {
			t.Fatal(err)
		}
		present, rules, err := parseWindowsPassword(b)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: err %v", c.file, err)
			continue
		}
		if c.wantErr {
			continue
		}
		if (present == nil) != (c.present == nil) || (present != nil && *present != *c.present) || rules != c.rules {
			t.Errorf("%s: present %v rules %+v, want %v %+v", c.file, present, rules, c.present, c.rules)
		}
	}
}

func FuzzParseWindowsPassword(f *testing.F) {
	seeds(f, "windows-password")
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, r, err := parseWindowsPassword(b); err == nil && (r.MinLength < 0 || !r.Enforced) {
			t.Fatalf("rules %+v", r)
		}
	})
}
