package service

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/micromdm/plist"
)

func testConfig() Config {
	return Config{Name: DefaultName, Executable: "/usr/local/bin/mdmagent", StateDir: "/var/lib/hale-agent",
		WipeRoots: []string{"/home", "/srv/chat data"}}
}

// parseUnit reads a systemd unit into section -> key -> values, refusing anything that is not
// a section header, a Key=Value line, a comment or blank.
func parseUnit(t *testing.T, unit string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || k == "" || strings.ContainsAny(k, " \t") {
				t.Fatalf("line %d is not Key=Value inside a section: %q", i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// knownKeys are the directives the unit may use, per section: a typo is caught even where
// systemd-analyze is not installed.
var knownKeys = map[string][]string{
	"Unit": {"Description", "Documentation", "After", "Wants", "StartLimitIntervalSec", "StartLimitBurst"},
	"Service": {"Type", "ExecStart", "Restart", "RestartSec", "RestartPreventExitStatus", "TimeoutStopSec",
		"StateDirectory", "StateDirectoryMode", "RuntimeDirectory", "RuntimeDirectoryMode", "ReadWritePaths", "UMask", "NoNewPrivileges", "ProtectSystem",
		"ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictSUIDSGID", "RestrictRealtime",
		"RestrictNamespaces", "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures",
		"RestrictAddressFamilies", "KeyringMode", "PrivateDevices", "MemoryMax", "TasksMax"},
	"Install": {"WantedBy"},
}

// splitExec unquotes an ExecStart line written by systemdQuote.
func splitExec(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] != '"' {
			t.Fatalf("unquoted word in ExecStart: %q", s)
		}
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
			}
			b.WriteByte(s[i])
		}
		words = append(words, strings.NewReplacer("%%", "%", "$$", "$").Replace(b.String()))
		s = s[i+1:]
	}
	return words
}

func TestSystemdUnit(t *testing.T) {
	c := testConfig()
	unit, err := SystemdUnit(c)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, unit)
	for section, keys := range u {
		for k := range keys {
			if !slices.Contains(knownKeys[section], k) {
				t.Errorf("unknown directive [%s] %s", section, k)
			}
		}
	}
	want := map[string]string{
		"Restart": "on-failure", "RestartSec": "5s", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		// A wipe root under /home: ProtectHome=read-only would win over ReadWritePaths=/home.
		"ProtectHome": "no", "PrivateTmp": "yes", "StateDirectory": "hale-agent", "StateDirectoryMode": "0700",
		"UMask": "0077", "RestartPreventExitStatus": "78",
	}
	for k, v := range want {
		if got := u["Service"][k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if rw := u["Service"]["ReadWritePaths"]; !slices.Equal(rw, []string{c.StateDir, "-/home", `-/srv/chat\x20data`}) {
		t.Errorf("ReadWritePaths %q must be the state dir and the wipe roots", rw)
	}
	argv := splitExec(t, u["Service"]["ExecStart"][0])
	wantArgv := []string{c.Executable, "run", "--state-dir", c.StateDir, "--wipe-root", "/home", "--wipe-root", "/srv/chat data"}
	if !slices.Equal(argv, wantArgv) {
		t.Errorf("ExecStart argv %q, want %q", argv, wantArgv)
	}
	if u["Install"]["WantedBy"][0] != "multi-user.target" {
		t.Error("not wanted by multi-user.target")
	}
	// Wipe roots outside the home directories keep ProtectHome=read-only.
	c.WipeRoots = []string{"/srv/chat", "/opt/securechat"}
	unit, _ = SystemdUnit(c)
	u = parseUnit(t, unit)
	if got := u["Service"]["ProtectHome"]; !slices.Equal(got, []string{"read-only"}) {
		t.Errorf("ProtectHome %q with wipe roots outside /home, want read-only", got)
	}
	if rw := u["Service"]["ReadWritePaths"]; !slices.Equal(rw, []string{c.StateDir, "-/srv/chat", "-/opt/securechat"}) {
		t.Errorf("ReadWritePaths %q", rw)
	}
	// A state dir outside /var/lib gets no StateDirectory, only ReadWritePaths.
	c.StateDir = "/opt/hale state"
	unit, _ = SystemdUnit(c)
	u = parseUnit(t, unit)
	if _, ok := u["Service"]["StateDirectory"]; ok || !slices.Contains(u["Service"]["ReadWritePaths"], `/opt/hale\x20state`) {
		t.Errorf("custom state dir: %q", u["Service"])
	}
	// Where systemd-analyze exists, it has the last word.
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		p := filepath.Join(t.TempDir(), "hale-agent.service")
		unit, _ = SystemdUnit(testConfig())
		os.WriteFile(p, []byte(strings.Replace(unit, "/usr/local/bin/mdmagent", "/bin/true", 1)), 0o644)
		// verify exits 0 on unknown keys and bad values (it only warns), so any warning
		// about the unit fails the test.
		out, err := exec.Command(sa, "verify", p).CombinedOutput()
		if err != nil || strings.Contains(string(out), p) {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		t.Logf("systemd-analyze verify: ok (%q)", strings.TrimSpace(string(out)))
	} else {
		t.Log("systemd-analyze not installed: checked structure and directive names only")
	}
}

func TestRenderRefusesInjection(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.StateDir = "/var/lib/x\nExecStartPre=/bin/rm -rf /" },
		func(c *Config) { c.ExtraArgs = []string{"{{Path}}"} },
		func(c *Config) { c.WipeRoots = []string{"relative"} },
		func(c *Config) { c.Executable = "mdmagent" },
		func(c *Config) { c.Name = "bad name" },
	} {
		c := testConfig()
		mut(&c)
		if _, err := SystemdUnit(c); err == nil {
			t.Errorf("%+v rendered", c)
		}
		if _, err := LaunchdPlist(c); err == nil {
			t.Errorf("%+v rendered as plist", c)
		}
	}
	// Specifiers and variables are escaped, not expanded.
	c := testConfig()
	c.WipeRoots = []string{"/srv/%h/$HOME"}
	unit, _ := SystemdUnit(c)
	if !strings.Contains(unit, `"/srv/%%h/$$HOME"`) {
		t.Errorf("specifiers not escaped:\n%s", unit)
	}
}

func TestLaunchdPlist(t *testing.T) {
	c := testConfig()
	c.WipeRoots = append(c.WipeRoots, "/Users/<a&b>")
	doc, err := LaunchdPlist(c)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Label             string
		ProgramArguments  []string
		RunAtLoad         bool
		KeepAlive         map[string]bool
		ThrottleInterval  int
		Umask             int
		StandardErrorPath string
	}
	if err := plist.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("plist does not parse: %v\n%s", err, doc)
	}
	wantArgs := []string{c.Executable, "run", "--state-dir", c.StateDir, "--wipe-root", "/home", "--wipe-root", "/srv/chat data", "--wipe-root", "/Users/<a&b>"}
	if p.Label != c.Name || !slices.Equal(p.ProgramArguments, wantArgs) || !p.RunAtLoad || p.Umask != 0o77 {
		t.Fatalf("plist %+v", p)
	}
	if succ, ok := p.KeepAlive["SuccessfulExit"]; !ok || succ {
		t.Fatal("KeepAlive must restart on failure only (SuccessfulExit=false), so a wiped agent stays stopped")
	}
}

// TestInstallUninstallSysV installs a real service into /etc/init.d under a throwaway name and
// removes it again, checking that nothing is left behind.
func TestInstallUninstallSysV(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a system service needs root")
	}
	if p := Platform(); p != "unix-systemv" {
		t.Skipf("service system is %s; this test installs only into SysV init (no running systemd here to restore)", p)
	}
	b := make([]byte, 4)
	rand.Read(b)
	c := Config{Name: "hale-agent-test-" + hex.EncodeToString(b), Executable: "/bin/true", StateDir: filepath.Join(t.TempDir(), "state")}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	script := "/etc/init.d/" + c.Name
	t.Cleanup(func() {
		os.Remove(script)
		for _, l := range sysvLinks(c.Name) {
			os.Remove(l)
		}
	})
	if err := Install(c); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(script)
	if err != nil {
		t.Fatalf("init script missing after install: %v", err)
	}
	if !strings.Contains(string(body), "/bin/true") || !strings.Contains(string(body), c.StateDir) {
		t.Fatalf("init script does not run the agent:\n%s", body)
	}
	if err := Install(c); err == nil {
		t.Fatal("a second install over an existing one succeeded")
	}
	if st, err := Status(c); err != nil || st == "not installed" {
		t.Fatalf("status after install: %q %v", st, err)
	}
	if err := Uninstall(c, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(sysvLinks(c.Name), script) {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind after uninstall", p)
		}
	}
	if _, err := os.Stat(c.StateDir); err != nil {
		t.Fatal("uninstall without --purge removed the state")
	}
	if err := Uninstall(c, true); err != nil {
		t.Fatalf("second uninstall (purge): %v", err)
	}
	if _, err := os.Stat(c.StateDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("uninstall --purge left the state directory")
	}
}
