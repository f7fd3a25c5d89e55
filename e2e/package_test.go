package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/installer"
	"github.com/halemdm/hale/api"
)

// buildAgentVersion builds mdmagent stamped with version.
func buildAgentVersion(t *testing.T, version string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mdmagent")
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/halemdm/hale/internal/buildinfo.Version="+version, "-o", out, "./cmd/mdmagent")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build mdmagent %s: %v\n%s", version, err, b)
	}
	return out
}

// dpkg runs dpkg and fails the test if it fails.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// The .deb installed for real on this machine: the service starts (the SysV script here, there
// being no systemd), enrolls with the package's reusable credential, reports its version, keeps
// its device ID through an upgrade to a newer package, and removal stops it. It changes the
// machine (/usr/bin/mdmagent, /etc/init.d/hale-agent, /var/lib/hale-agent), so it runs in CI,
// on the throwaway CI machine, or where HALE_DEB_INSTALL_TEST=1 asks for it, as root, and only
// where no hale-agent is installed.
func TestDebInstallUpgradeRemove(t *testing.T) {
	if os.Getenv("CI") == "" && os.Getenv("HALE_DEB_INSTALL_TEST") == "" {
		t.Skip("installs a package on this machine: runs in CI or with HALE_DEB_INSTALL_TEST=1")
	}
	requireRoot(t)
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("not a Debian machine")
	}
	for _, p := range []string{"/var/lib/hale-agent", "/etc/init.d/hale-agent", "/usr/bin/mdmagent"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s exists: a hale-agent is installed here already", p)
		}
	}
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "hale-agent").Run()
		os.RemoveAll("/var/lib/hale-agent")
	})
	srv := startServer(t)
	it := srv.token("it")
	var cred api.NewEnrollment
	srv.mustCall("POST", "/api/v1/enrollments", it, `{"group":"ward-9","platform":"agent","reusable":true,"os":"linux","max_devices":3}`, 201, &cred)
	cfg := installer.Config{Format: installer.FormatDeb, Version: "1.0.0", Arch: "amd64", Group: "ward-9",
		Enroll: agent.EnrollFile{ServerURL: srv.url, Token: cred.Token, CAFingerprint: rootFingerprint(t, srv)}}
	debs := map[string]string{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		cfg.Version, cfg.Binary = v, buildAgentVersion(t, "v"+v)
		p, err := installer.Build(t.Context(), cfg, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		debs[v] = p
	}
	device := func() (api.Device, bool) {
		var devs api.Devices
		srv.mustCall("GET", "/api/v1/devices?group=ward-9", it, "", 200, &devs)
		if len(devs.Devices) > 1 {
			t.Fatalf("more than one device: %+v", devs.Devices)
		}
		if len(devs.Devices) == 0 {
			return api.Device{}, false
		}
		return devs.Devices[0], true
	}

	dpkg(t, "-i", debs["1.0.0"])
	var first api.Device
	waitFor(t, 60*time.Second, "the installed agent to enroll and report", func() bool {
		d, ok := device()
		first = d
		return ok && d.AgentVersion == "v1.0.0" && !d.LastSeen.IsZero()
	})
	var ans struct {
		ReportedAt time.Time `json:"reported_at"`
	}
	accessTok := srv.token("access")
	waitFor(t, 60*time.Second, "a posture report", func() bool {
		srv.mustCall("GET", "/access/v1/devices/"+first.ID, accessTok, "", 200, &ans)
		return !ans.ReportedAt.IsZero()
	})

	dpkg(t, "-i", debs["1.1.0"])
	waitFor(t, 60*time.Second, "the upgraded agent to report its new version", func() bool {
		d, ok := device()
		return ok && d.AgentVersion == "v1.1.0"
	})
	if d, _ := device(); d.ID != first.ID {
		t.Fatalf("the upgrade changed the device: %s then %s", first.ID, d.ID)
	}
	var list api.Enrollments
	srv.mustCall("GET", "/api/v1/enrollments", it, "", 200, &list)
	if len(list.Enrollments) != 1 || list.Enrollments[0].Uses != 1 {
		t.Errorf("the credential was used %+v times, want once", list.Enrollments)
	}

	dpkg(t, "-r", "hale-agent")
	if _, err := os.Stat("/etc/init.d/hale-agent"); err == nil {
		t.Error("the init script outlived the package")
	}
	if out, err := exec.Command("pgrep", "-f", "/usr/bin/mdmagent run").CombinedOutput(); err == nil {
		t.Errorf("the agent still runs after removal: %s", out)
	}
	// Without --unenroll-on-remove the identity stays for a reinstall.
	if _, err := os.Stat("/var/lib/hale-agent"); err != nil {
		t.Errorf("the state directory went with the package: %v", err)
	}
}
