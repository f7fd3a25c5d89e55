package collect

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

var fixedNow = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// gsettingsAsRoot is the command line the agent runs (as root) to read alice's GNOME setting.
func gsettingsAsRoot(schema, key string) string {
	return "/usr/sbin/runuser -u alice -- /usr/bin/env HOME=/home/alice XDG_RUNTIME_DIR=/run/user/1000 " +
		"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus /usr/bin/gsettings get " + schema + " " + key
}

func out(stdout string) fakeRun { return fakeRun{out: Output{Stdout: []byte(stdout)}} }

// fixtureRunners are the tools present on each fixture machine, with their recorded answers.
func fixtureRunners(t *testing.T) map[string]map[string]fakeRun {
	return map[string]map[string]fakeRun{
		"luks": {
			gsettingsAsRoot("org.gnome.desktop.screensaver", "lock-enabled"): out("true\n"),
			gsettingsAsRoot("org.gnome.desktop.session", "idle-delay"):       out("uint32 300\n"),
			gsettingsAsRoot("org.gnome.desktop.screensaver", "lock-delay"):   out("uint32 0\n"),
			"/usr/lib/update-notifier/apt-check":                             {out: Output{Stderr: tool(t, "apt-check/ubuntu-3-of-12.txt")}},
		},
		"lvm-on-luks": {
			"/usr/bin/dnf -q -C updateinfo list --security": out(string(tool(t, "dnf/dnf4.txt"))),
			"/usr/bin/needs-restarting -r":                  {out: Output{Stdout: []byte("Core libraries or services have been updated since boot-up:\n  * kernel\n")}, err: &ExitError{Path: "/usr/bin/needs-restarting", Code: 1}},
			"/usr/bin/firewall-cmd --state":                 out(string(tool(t, "firewall-cmd/running.txt"))),
		},
		"verity-only": {
			"/usr/sbin/nft list ruleset": out(string(tool(t, "nft/docker-only.txt"))),
		},
		"plain": {
			"/usr/lib/update-notifier/apt-check": {out: Output{Stderr: tool(t, "apt-check/none.txt")}},
			"/usr/bin/firewall-cmd --state":      {out: Output{Stdout: tool(t, "firewall-cmd/not-running.txt")}, err: &ExitError{Path: "/usr/bin/firewall-cmd", Code: 252}},
			"/usr/sbin/nft list ruleset":         out(""),
		},
		"btrfs-luks-plainswap": {},
		"overlay":              {},
	}
}

// claimValues returns each known claim's value as JSON, keyed by its JSON name, and checks
// every claim is the agent's and stamped with the clock.
func claimValues(t *testing.T, p *policies.Posture) map[string]string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for k, raw := range m {
		if k == "platform" || k == "reported_at" {
			continue
		}
		var c struct {
			Value      json.RawMessage `json:"value"`
			Source     string          `json:"source"`
			ObservedAt time.Time       `json:"observed_at"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if c.Source != "agent" || !c.ObservedAt.Equal(fixedNow) {
			t.Errorf("%s: source %q observed %v; want agent at %v", k, c.Source, c.ObservedAt, fixedNow)
		}
		vals[k] = string(c.Value)
	}
	return vals
}

// fixtureCollectors are the Linux collectors that read the fixture root (the agent's own files
// are host paths, tested separately).
func fixtureCollectors() []Collector {
	var cs []Collector
	for _, c := range LinuxCollectors() {
		if c.Name() != "agent-integrity" {
			cs = append(cs, c)
		}
	}
	return cs
}

func TestLinuxFixtures(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 0 }

	const unknown = ""
	cases := map[string]struct {
		want    map[string]string // JSON value of each claim; "" means unknown
		errorIn []string          // collectors expected to report an error
	}{
		"luks": {want: map[string]string{
			"os":                       `{"version":"24.04","distribution":"ubuntu","kernel":"6.8.0-45-generic"}`,
			"disk_encrypted":           `true`,
			"swap_encrypted":           `true`,
			"screen_lock_enabled":      `true`,
			"screen_lock_timeout":      `"5m0s"`,
			"passcode_present":         `true`,
			"password_rules":           `{"enforced":true,"min_length":12,"min_classes":3}`,
			"pending_security_updates": `3`,
			"reboot_required":          `true`,
			"firewall_enabled":         `true`,
			"secure_boot":              `true`,
			"kernel_lockdown":          `"none"`,
			"kernel_tainted":           `false`,
		}},
		"lvm-on-luks": {want: map[string]string{
			"os":                       `{"version":"40","distribution":"fedora","kernel":"6.10.6-200.fc40.x86_64"}`,
			"disk_encrypted":           `true`,
			"swap_encrypted":           `true`,
			"screen_lock_enabled":      `true`,
			"screen_lock_timeout":      `"10m0s"`,
			"passcode_present":         `false`,
			"password_rules":           `{"enforced":true,"min_length":8}`,
			"pending_security_updates": `3`,
			"reboot_required":          `true`,
			"firewall_enabled":         `true`,
			"secure_boot":              `false`,
			"kernel_lockdown":          `"integrity"`,
			"kernel_tainted":           `true`,
		}},
		"verity-only": {want: map[string]string{
			"os":                       `{"version":"3815.2.0","build":"2024-03-01-1234","distribution":"flatcar","kernel":"6.8.0-45-generic"}`,
			"disk_encrypted":           `false`,
			"swap_encrypted":           `true`,
			"screen_lock_enabled":      unknown, // headless
			"screen_lock_timeout":      unknown,
			"passcode_present":         unknown, // no local interactive users
			"pending_security_updates": unknown,
			"reboot_required":          unknown,
			"firewall_enabled":         `false`, // Docker's ruleset is not a firewall
			"secure_boot":              `false`, // BIOS boot
			"kernel_lockdown":          unknown,
			"kernel_tainted":           `false`,
		}},
		"plain": {want: map[string]string{
			"os":                       `{"version":"12","distribution":"debian","kernel":"6.8.0-45-generic"}`,
			"disk_encrypted":           `false`,
			"swap_encrypted":           `false`,
			"screen_lock_enabled":      `true`, // from dconf locks: gsettings is not installed
			"screen_lock_timeout":      `"10m30s"`,
			"passcode_present":         `false`,
			"password_rules":           `{"enforced":false,"min_length":0}`,
			"pending_security_updates": `0`,
			"reboot_required":          `false`,
			"firewall_enabled":         `false`,
			"secure_boot":              `false`,
			"kernel_tainted":           `false`,
		}},
		"btrfs-luks-plainswap": {
			want: map[string]string{
				"os":               `{"version":"41","distribution":"fedora","kernel":"6.8.0-45-generic"}`,
				"disk_encrypted":   `true`,
				"swap_encrypted":   `false`,
				"firewall_enabled": unknown, // no nft, no ufw, no firewalld: cannot tell
				"passcode_present": unknown,
			},
			errorIn: []string{"linux-firewall", "linux-password"},
		},
		"overlay": {
			want: map[string]string{
				"disk_encrypted": unknown,
				"swap_encrypted": `true`, // no swap
			},
			errorIn: []string{"linux-disk", "linux-firewall", "linux-password"},
		},
	}
	runners := fixtureRunners(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p, errs := Collect(context.Background(),
				WithRoot(fixtureRoot(t, name)),
				WithRunner(&fakeRunner{cmds: runners[name]}),
				WithClock(func() time.Time { return fixedNow }),
				WithCollectors(fixtureCollectors()...),
				WithPlatform(policies.PlatformLinux),
			)
			var failed []string
			for _, e := range errs {
				failed = append(failed, e.Collector)
				if !slices.Contains(c.errorIn, e.Collector) {
					t.Errorf("unexpected error: %v", e)
				}
			}
			for _, want := range c.errorIn {
				if !slices.Contains(failed, want) {
					t.Errorf("collector %s reported no error", want)
				}
			}
			got := claimValues(t, p)
			for k, want := range c.want {
				if got[k] != want {
					t.Errorf("%s = %s, want %s", k, orUnknown(got[k]), orUnknown(want))
				}
			}
			if p.Platform != policies.PlatformLinux || !p.ReportedAt.Equal(fixedNow) {
				t.Errorf("platform %q reported %v", p.Platform, p.ReportedAt)
			}
		})
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// An agent not running as root cannot read another user's settings; with no dconf locks to
// fall back on, the screen lock is unknown and the error says what to do.
func TestGnomeScreenLockNotRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 4242 }
	env := (&Env{Root: fixtureRoot(t, "luks"), Runner: &fakeRunner{}, Now: func() time.Time { return fixedNow }}).withDefaults()
	p, err := collectLinuxScreenLock(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "run it as root") {
		t.Errorf("err = %v", err)
	}
	if p.ScreenLockEnabled != nil || p.ScreenLockTimeout != nil {
		t.Error("screen lock claimed without reading it")
	}
}

// The session user's own gsettings is run directly when the agent is that user.
func TestGnomeScreenLockAsUser(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	r := &fakeRunner{cmds: map[string]fakeRun{
		"/usr/bin/gsettings get org.gnome.desktop.screensaver lock-enabled": out("true\n"),
		"/usr/bin/gsettings get org.gnome.desktop.session idle-delay":       out("uint32 0\n"),
		"/usr/bin/gsettings get org.gnome.desktop.screensaver lock-delay":   out("uint32 0\n"),
	}}
	env := (&Env{Root: fixtureRoot(t, "luks"), Runner: r, Now: func() time.Time { return fixedNow }}).withDefaults()
	p, err := collectLinuxScreenLock(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	// idle-delay 0: the screen never blanks, so it never locks; no timeout is claimed.
	if p.ScreenLockEnabled == nil || p.ScreenLockEnabled.Value || p.ScreenLockTimeout != nil {
		t.Errorf("got %+v %+v", p.ScreenLockEnabled, p.ScreenLockTimeout)
	}
}

func TestNftFirewallOffWhenUfwDisabled(t *testing.T) {
	r := &fakeRunner{cmds: map[string]fakeRun{"/usr/sbin/nft list ruleset": out(string(tool(t, "nft/ufw.txt")))}}
	env := (&Env{Root: fixtureRoot(t, "plain"), Runner: r, Now: func() time.Time { return fixedNow }}).withDefaults()
	p, err := collectLinuxFirewall(context.Background(), env)
	if err != nil || p.FirewallEnabled == nil || !p.FirewallEnabled.Value {
		t.Errorf("ufw rules loaded in nftables: %+v, %v", p.FirewallEnabled, err)
	}
}

// An administrator's [$i] in /etc/xdg/kscreenlockerrc beats the user's own file, for a whole
// group or a single key.
func TestKDEImmutable(t *testing.T) {
	for _, c := range []struct {
		system, user string
		want         screenLock
	}{
		{"[Daemon][$i]\nTimeout=3\n", "[Daemon]\nTimeout=60\nAutolock=false\n", screenLock{true, 3*time.Minute + 5*time.Second}},
		{"[Daemon]\nAutolock[$i]=true\nLockGrace=0\n", "[Daemon]\nAutolock=false\nTimeout=15\n", screenLock{true, 15 * time.Minute}},
		{"[Daemon]\nTimeout=3\n", "[Daemon]\nLockOnResume=false\n", screenLock{}},
		{"", "[Daemon]\nTimeout=0\n", screenLock{}},
	} {
		root := t.TempDir()
		for f, data := range map[string]string{"etc/xdg/kscreenlockerrc": c.system, "home/u/.config/kscreenlockerrc": c.user} {
			p := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := kdeScreenLock(&Env{Root: root}, session{Home: "/home/u"})
		if err != nil || got != c.want {
			t.Errorf("system %q user %q: %+v, %v; want %+v", c.system, c.user, got, err, c.want)
		}
	}
}

// A partition of an md array whose members are LUKS devices is encrypted: the walk goes from
// the partition to its disk.
func TestPartitionOfEncryptedArray(t *testing.T) {
	root := t.TempDir()
	w := func(p, data string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("sys/devices/virtual/block/md0/md0p1/partition", "1\n")
	w("sys/devices/virtual/block/dm-0/dm/uuid", "CRYPT-LUKS2-abc-m0\n")
	w("sys/devices/virtual/block/dm-1/dm/uuid", "CRYPT-LUKS2-def-m1\n")
	for _, s := range []string{"dm-0", "dm-1"} {
		if err := os.MkdirAll(filepath.Join(root, "sys/devices/virtual/block/md0/slaves"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../"+s, filepath.Join(root, "sys/devices/virtual/block/md0/slaves", s)); err != nil {
			t.Fatal(err)
		}
	}
	env := &Env{Root: root}
	if enc, err := blockEncrypted(env, "/sys/devices/virtual/block/md0/md0p1", 0); err != nil || !enc {
		t.Errorf("md0p1 on LUKS members: %v, %v", enc, err)
	}
	w("sys/devices/virtual/block/dm-1/dm/uuid", "CRYPT-INTEGRITY-def-m1\n")
	if enc, err := blockEncrypted(env, "/sys/devices/virtual/block/md0/md0p1", 0); err != nil || enc {
		t.Errorf("md0p1 with one integrity-only member: %v, %v", enc, err)
	}
}

func TestPasswordRules(t *testing.T) {
	cases := []struct {
		stack, conf string
		want        policies.PasswordRules
	}{
		{"password requisite pam_pwquality.so retry=3 minlen=14 ocredit=-1", "minlen = 10\n",
			policies.PasswordRules{Enforced: true, MinLength: 14, MinClasses: 1, MinOther: 1}},
		{"password requisite pam_pwquality.so dcredit=-1 ucredit=-1 lcredit=-2", "",
			policies.PasswordRules{Enforced: true, MinLength: 8, MinClasses: 3, MinDigits: 1, MinLetters: 3}},
		{"password [success=1 default=ignore] /lib/security/pam_pwquality.so dcredit=2 ucredit=2", "",
			policies.PasswordRules{Enforced: true, MinLength: 6}}, // 8 less 4 credits, floored at 6
		{"password required pam_cracklib.so minlen=12", "",
			policies.PasswordRules{Enforced: true, MinLength: 8}}, // cracklib credits 1 per class
		{"#password requisite pam_pwquality.so\npassword required pam_unix.so", "", policies.PasswordRules{}},
		{"password", "", policies.PasswordRules{}},
	}
	for _, c := range cases {
		module, args := parsePAMQuality([]byte(c.stack))
		var got policies.PasswordRules
		if module != "" {
			conf, _ := parseKeyValue([]byte(c.conf))
			maps.Copy(conf, args)
			got = passwordRules(module, conf)
		}
		if got != c.want {
			t.Errorf("%q: %+v, want %+v", c.stack, got, c.want)
		}
	}
	alnum := &policies.PasscodePolicy{Required: true, MinLength: 12, RequireAlphanumeric: true}
	for _, c := range []struct {
		rules policies.PasswordRules
		want  bool
	}{
		{policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 4}, true},
		{policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 3, MinDigits: 1}, true},
		{policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 2, MinDigits: 1, MinLetters: 1}, true},
		{policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 3}, false},               // upper, lower, other: no digit
		{policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 2, MinDigits: 1}, false}, // digit and other: no letter
		{policies.PasswordRules{Enforced: true, MinLength: 11, MinClasses: 4}, false},
		{policies.PasswordRules{MinLength: 20, MinClasses: 4}, false}, // not enforced
	} {
		if got := c.rules.Satisfy(alnum); got != c.want {
			t.Errorf("%+v satisfies %+v: %v, want %v", c.rules, alnum, got, c.want)
		}
	}
}
