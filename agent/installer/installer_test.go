package installer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/internal/toolneed"
)

// testConfig is an installer of a fake mdmagent (the packaging does not run it).
func testConfig(t *testing.T, format string) Config {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mdmagent")
	if err := os.WriteFile(bin, []byte("MZ not really an agent\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{Format: format, Binary: bin, Version: "v1.4.0", Arch: "amd64", Group: "ward-3",
		Enroll: agent.EnrollFile{ServerURL: "https://mdm.example.org:8443", Token: "hale_enr_" + strings.Repeat("ab", 32),
			CAFingerprint: strings.Repeat("0f", 32)}}
}

// build builds c twice in two directories and fails unless both are the same bytes.
func build(t *testing.T, c Config) string {
	t.Helper()
	var first []byte
	var path string
	for i := range 2 {
		p, err := Build(context.Background(), c, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first, path = b, p
		} else if !bytes.Equal(first, b) {
			t.Fatalf("%s: two builds of the same inputs differ", c.Format)
		}
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestDeb(t *testing.T) {
	toolneed.Require(t, "dpkg-deb")
	c := testConfig(t, FormatDeb)
	c.UnenrollOnRemove = true
	p := build(t, c)
	if filepath.Base(p) != "hale-agent_1.4.0_ward-3_amd64.deb" {
		t.Errorf("name %s", p)
	}
	list := run(t, "dpkg-deb", "-c", p)
	for _, want := range []string{"-rwxr-xr-x root/root", "./usr/bin/mdmagent", "-rw------- root/root", "./etc/hale-agent/enroll.json", "2026-01-01 00:00"} {
		if !strings.Contains(list, want) {
			t.Errorf("dpkg-deb -c lacks %q:\n%s", want, list)
		}
	}
	info := run(t, "dpkg-deb", "-I", p)
	for _, want := range []string{"Package: hale-agent", "Version: 1.4.0", "Architecture: amd64", "group ward-3", "postinst", "prerm"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	dir := t.TempDir()
	run(t, "dpkg-deb", "-e", p, dir)
	postinst, _ := os.ReadFile(filepath.Join(dir, "postinst"))
	prerm, _ := os.ReadFile(filepath.Join(dir, "prerm"))
	if !strings.Contains(string(postinst), "/usr/bin/mdmagent install --enroll-file /etc/hale-agent/enroll.json") ||
		!strings.Contains(string(prerm), "/usr/bin/mdmagent uninstall --purge") {
		t.Errorf("scripts:\n%s\n%s", postinst, prerm)
	}
	run(t, "dpkg-deb", "-x", p, dir)
	ef, err := agent.ReadEnrollFile(filepath.Join(dir, "etc/hale-agent/enroll.json"))
	if err != nil || *ef != c.Enroll {
		t.Errorf("packaged enrollment file %+v, %v", ef, err)
	}
}

func TestRPM(t *testing.T) {
	toolneed.Require(t, "rpm")
	p := build(t, testConfig(t, FormatRPM))
	list := run(t, "rpm", "-qpl", p)
	if !strings.Contains(list, "/usr/bin/mdmagent") || !strings.Contains(list, "/etc/hale-agent/enroll.json") {
		t.Errorf("rpm -qpl:\n%s", list)
	}
	scripts := run(t, "rpm", "-qp", "--scripts", p)
	if !strings.Contains(scripts, "postinstall scriptlet") || !strings.Contains(scripts, "mdmagent uninstall ||") ||
		strings.Contains(scripts, "--purge") {
		t.Errorf("rpm --scripts:\n%s", scripts)
	}
	info := run(t, "rpm", "-qpi", p)
	if !strings.Contains(info, "Version     : 1.4.0") || !strings.Contains(info, "x86_64") {
		t.Errorf("rpm -qpi:\n%s", info)
	}
}

func TestMSI(t *testing.T) {
	toolneed.Require(t, "wixl", "msiinfo", "msibuild")
	t.Setenv("TZ", "UTC") // wixl writes the cabinet's DOS times in local time
	c := testConfig(t, FormatMSI)
	p := build(t, c)
	// Two builds a second apart are the same only if the cabinet's times are pinned too; build's
	// two builds usually fall within one second, so the times are checked themselves.
	cab, err := exec.Command("msiinfo", "extract", p, "agent.cab").Output()
	if err != nil {
		t.Fatal(err)
	}
	stamps, err := cabinetTimes(cab)
	if err != nil || len(stamps) != 2 {
		t.Fatalf("cabinet: %d files, %v", len(stamps), err)
	}
	for name, at := range stamps {
		if !at.Equal(DefaultMTime) {
			t.Errorf("cabinet file %s is stamped %s, want %s", name, at, DefaultMTime)
		}
	}
	tables := run(t, "msiinfo", "tables", p)
	for _, want := range []string{"ServiceInstall", "ServiceControl", "File", "Upgrade"} {
		if !strings.Contains(tables, want) {
			t.Errorf("msiinfo tables lacks %s:\n%s", want, tables)
		}
	}
	svc := run(t, "msiinfo", "export", p, "ServiceInstall")
	if !strings.Contains(svc, "hale-agent") || !strings.Contains(svc, "run --enroll-file") {
		t.Errorf("ServiceInstall:\n%s", svc)
	}
	ctl := run(t, "msiinfo", "export", p, "ServiceControl")
	if !strings.Contains(ctl, "hale-agent") {
		t.Errorf("ServiceControl:\n%s", ctl)
	}
	files := run(t, "msiinfo", "export", p, "File")
	if !strings.Contains(files, "mdmagent.exe") || !strings.Contains(files, "enroll.json") {
		t.Errorf("File:\n%s", files)
	}
	if ca := run(t, "msiinfo", "export", p, "CustomAction"); strings.Contains(ca, "Unenroll") {
		t.Error("an installer that keeps the enrollment unenrolls on removal")
	}
	// Unenrolling on removal: a removal, not an upgrade, runs mdmagent uninstall --purge.
	c.UnenrollOnRemove = true
	pu := build(t, c)
	ca := run(t, "msiinfo", "export", pu, "CustomAction")
	seq := run(t, "msiinfo", "export", pu, "InstallExecuteSequence")
	if !strings.Contains(ca, "mdmagent.exe\tuninstall --purge") || !strings.Contains(seq, "Unenroll\tREMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE\t1850") {
		t.Errorf("CustomAction:\n%s\nInstallExecuteSequence:\n%s", ca, seq)
	}
	// A new version is a new product of the same upgrade family; another group another family.
	c2 := c
	c2.Version = "1.5.0"
	if guid("hale-agent product", c.Group, "1.4.0", "amd64") == guid("hale-agent product", c.Group, "1.5.0", "amd64") ||
		guid("hale-agent upgrade", "ward-3", "amd64") == guid("hale-agent upgrade", "ward-4", "amd64") {
		t.Error("product or upgrade codes do not follow version and group")
	}
}

func TestMacTarball(t *testing.T) {
	toolneed.Require(t, "tar")
	c := testConfig(t, FormatPkg)
	p := build(t, c)
	list := run(t, "tar", "-tvzf", p)
	for _, want := range []string{"hale-agent/install.sh", "hale-agent/mdmagent", "-rw------- 0/0", "hale-agent/enroll.json", "hale-agent/uninstall.sh"} {
		if !strings.Contains(list, want) {
			t.Errorf("tar lacks %q:\n%s", want, list)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"format":      func(c *Config) { c.Format = "exe" },
		"version":     func(c *Config) { c.Version = "latest" },
		"arch":        func(c *Config) { c.Arch = "386" },
		"group":       func(c *Config) { c.Group = "../etc" },
		"binary":      func(c *Config) { c.Binary = "/nonexistent/mdmagent" },
		"fingerprint": func(c *Config) { c.Enroll.CAFingerprint = "abc" },
		"server":      func(c *Config) { c.Enroll.ServerURL = "ftp://x" },
		"token":       func(c *Config) { c.Enroll.Token = "" },
	} {
		c := testConfig(t, FormatDeb)
		mutate(&c)
		if _, err := Build(context.Background(), c, t.TempDir()); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

// cabinetTimes returns the time each file of a Microsoft cabinet is stamped with (CFFILE's DOS
// date and time, read as UTC), by file name.
func cabinetTimes(cab []byte) (map[string]time.Time, error) {
	le := binary.LittleEndian
	if len(cab) < 36 || string(cab[:4]) != "MSCF" {
		return nil, errors.New("not a cabinet")
	}
	off, n := int(le.Uint32(cab[16:])), int(le.Uint16(cab[28:]))
	out := map[string]time.Time{}
	for range n {
		if off+16 > len(cab) {
			return nil, errors.New("truncated CFFILE")
		}
		date, clock := le.Uint16(cab[off+10:]), le.Uint16(cab[off+12:])
		end := bytes.IndexByte(cab[off+16:], 0)
		if end < 0 {
			return nil, errors.New("unterminated file name")
		}
		out[string(cab[off+16:off+16+end])] = time.Date(int(date>>9)+1980, time.Month(date>>5&0xf), int(date&0x1f),
			int(clock>>11), int(clock>>5&0x3f), int(clock&0x1f)*2, 0, time.UTC)
		off += 16 + end + 1
	}
	return out, nil
}
