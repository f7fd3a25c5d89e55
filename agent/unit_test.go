package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

func TestPlanWipe(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(root, "alice", "app", "db"))
	mustWrite(t, filepath.Join(outside, "secret"))
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, "agent-state")
	roots := []string{root}
	for _, tc := range []struct {
		path string
		ok   bool
		why  string
	}{
		{filepath.Join(root, "alice", "app"), true, ""},
		{filepath.Join(root, "alice", "app", "..", "app", "db"), true, ""},
		{filepath.Join(root, "link"), true, ""}, // the link itself is removed, not its target
		{filepath.Join(root, "nothing", "here"), true, ""},
		{"relative/path", false, "absolute"},
		{"/", false, "root"},
		{root, false, "allowed root"},
		{root + "/", false, "allowed root"},
		{filepath.Join(root, ".."), false, "allowed root"},
		{filepath.Join(root, "..", filepath.Base(outside), "secret"), false, "allowed root"},
		{root + "-sibling/x", false, "allowed root"},
		{filepath.Join(root, "link", "secret"), false, "symbolic link"},
		{"/etc/passwd", false, "allowed root"},
		{state, false, "own state"},
		{filepath.Join(state, "device.key"), false, "own state"},
		{root + "/a\x00b", false, "absolute"},
	} {
		_, err := planWipe([]string{tc.path}, nil, roots, state)
		if tc.ok && err != nil {
			t.Errorf("%q: %v", tc.path, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%q: err %v, want one mentioning %q", tc.path, err, tc.why)
		}
	}
	if _, err := planWipe(nil, nil, roots, state); err == nil {
		t.Error("an empty managed data list was accepted")
	}
	// The state directory containing a wipe path's parent is refused too.
	if _, err := planWipe([]string{filepath.Join(root, "alice")}, nil, roots, filepath.Join(root, "alice", "st")); err == nil {
		t.Error("a path containing the state directory was accepted")
	}
}

func TestDoWipeRemovesOnlyTheLinkAndReportsAbsent(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "secret"))
	link := filepath.Join(root, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	targets, err := planWipe([]string{link, filepath.Join(root, "absent")}, nil, []string{root}, "")
	if err != nil {
		t.Fatal(err)
	}
	removed, err := doWipe(targets)
	if err != nil || len(removed) != 1 || removed[0] != link {
		t.Fatalf("removed %v, err %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Fatal("the link's target was removed")
	}
}

func TestPostureSumIgnoresObservationTimes(t *testing.T) {
	t0 := time.Now()
	mk := func(at time.Time, v bool) *policies.Posture {
		return &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: at,
			DiskEncrypted: policies.Observe(v, policies.ProvenanceAgent, at)}
	}
	if postureSum(mk(t0, true)) != postureSum(mk(t0.Add(time.Hour), true)) {
		t.Fatal("the same facts observed later hash differently")
	}
	if postureSum(mk(t0, true)) == postureSum(mk(t0, false)) {
		t.Fatal("a changed fact hashes the same")
	}
	if postureSum(nil) == postureSum(mk(t0, true)) {
		t.Fatal("nil posture hashes like a real one")
	}
}

func TestBackoffAndIntervals(t *testing.T) {
	a := &Agent{backoffBase: time.Second, backoffMax: time.Minute, minInterval: 15 * time.Second, maxInterval: time.Hour}
	for n := 1; n < 40; n++ {
		d := a.backoff(n)
		if d < 0 || d > time.Minute {
			t.Fatalf("backoff(%d) = %s outside [0, max]", n, d)
		}
	}
	if d := a.backoff(30); d < 30*time.Second {
		t.Fatalf("backoff(30) = %s: not near the cap", d)
	}
	for in, want := range map[string]time.Duration{"1s": 15 * time.Second, "10m": 10 * time.Minute, "48h": time.Hour, "bogus": time.Minute, "": time.Minute, "-5s": time.Minute} {
		if got := a.clampInterval(in, time.Minute); got != want {
			t.Errorf("clampInterval(%q) = %s, want %s", in, got, want)
		}
	}
	for i := 0; i < 100; i++ {
		if d := jitter(time.Minute); d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("jitter(1m) = %s", d)
		}
	}
}

func TestNormalizeServerURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mdm.example.org":         "https://mdm.example.org",
		"https://mdm.example.org:8443/":   "https://mdm.example.org:8443",
		"https://mdm.example.org/hale///": "https://mdm.example.org/hale",
	} {
		got, _, err := normalizeServerURL(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"http://mdm", "mdm.example.org", "https://", "https://u:p@mdm", "https://mdm/?q=1", "%zz"} {
		if _, _, err := normalizeServerURL(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestExpandHomes(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2::/bin:/usr/sbin/nologin\n" +
		"alice:x:1000:1000::/home/alice:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nbad line\n"
	homes := localHomes([]byte(passwd))
	if strings.Join(homes, ",") != "/root,/home/alice" {
		t.Fatalf("homes %v", homes)
	}
	got := expandHomes([]string{"~/.local/share/securetext", "/opt/securetext"}, homes, []string{"/home", "/opt"})
	if strings.Join(got, ",") != "/home/alice/.local/share/securetext,/opt/securetext" {
		t.Fatalf("expanded %v (a home outside the wipe roots must not be touched)", got)
	}
	for p, ok := range map[string]bool{"/abs": true, "~/x": true, "~": false, "~/": false, "rel/x": false, "~root/x": false} {
		if validManagedPath(p) != ok {
			t.Errorf("validManagedPath(%q) = %v", p, !ok)
		}
	}
}
