package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/toolneed"
)

// package agent creates a reusable credential scoped to the installer's OS and builds a .deb
// whose enrollment file pins the server's root; an agent enrolling with that file gets its own
// identity in the group, and the credential counts the use.
func TestPackageAgentDeb(t *testing.T) {
	toolneed.Require(t, "dpkg-deb")
	e := newEnv(t)
	it := e.as(e.token("it"))
	bin := filepath.Join(t.TempDir(), "mdmagent")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	out := t.TempDir()
	var ans map[string]string
	it.okJSON(t, &ans, "package", "agent", "--format", "deb", "--group", "ward-3", "--binary", bin, "--version", "1.4.0",
		"--out", out, "--max-devices", "5", "-o", "json")
	if ans["os"] != "linux" || ans["ca_fingerprint"] != e.fingerprint() || filepath.Dir(ans["path"]) != out {
		t.Fatalf("answer %v", ans)
	}
	var list api.Enrollments
	e.call("GET", "/api/v1/enrollments", e.admin, nil, 200, &list)
	if len(list.Enrollments) != 1 || list.Enrollments[0].ID != ans["enrollment"] || !list.Enrollments[0].Reusable ||
		list.Enrollments[0].OS != "linux" || list.Enrollments[0].MaxDevices != 5 || list.Enrollments[0].Group != "ward-3" {
		t.Fatalf("credential %+v", list.Enrollments)
	}

	dir := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", ans["path"], dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, b)
	}
	enrollFile := filepath.Join(dir, "etc/hale-agent/enroll.json")
	ef, err := agent.ReadEnrollFile(enrollFile)
	if err != nil || ef.ServerURL != e.url || ef.CAFingerprint != e.fingerprint() {
		t.Fatalf("enrollment file %+v, %v", ef, err)
	}
	ids := map[string]bool{}
	for range 2 {
		store, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.EnrollFromFile(t.Context(), store, enrollFile, func(_ context.Context) agent.Facts {
			return agent.Facts{Hostname: "ward-3-laptop", OS: "linux"}
		}, nil, time.Millisecond, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		id, err := store.LoadIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids[id.DeviceID] = true
		// A restart (or an upgrade) of an enrolled agent does not enroll again.
		if err := agent.EnrollFromFile(t.Context(), store, enrollFile, nil, nil, time.Millisecond, time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if again, _ := store.LoadIdentity(); again.DeviceID != id.DeviceID {
			t.Errorf("re-enrolled: %s then %s", id.DeviceID, again.DeviceID)
		}
	}
	e.call("GET", "/api/v1/enrollments", e.admin, nil, 200, &list)
	if len(ids) != 2 || list.Enrollments[0].Uses != 2 {
		t.Errorf("devices %v, uses %d", ids, list.Enrollments[0].Uses)
	}
	r := it.ok(t, "enroll", "list")
	if !strings.Contains(r.stdout, "2/5 linux") {
		t.Errorf("enroll list:\n%s", r.stdout)
	}
	var devs api.Devices
	e.call("GET", "/api/v1/devices?group=ward-3", e.admin, nil, 200, &devs)
	if len(devs.Devices) != 2 {
		t.Errorf("devices in ward-3: %+v", devs.Devices)
	}

	// Refusals: a bad format, a signature without its key, a signed non-Windows installer.
	it.fails(t, exitUsage, "package", "agent", "--format", "exe", "--group", "g", "--binary", bin, "--version", "1.4.0")
	it.fails(t, exitUsage, "package", "agent", "--format", "msi", "--group", "g", "--binary", bin, "--version", "1.4.0", "--sign-cert", bin)
	it.fails(t, exitUsage, "package", "agent", "--format", "deb", "--group", "g", "--binary", bin, "--version", "1.4.0", "--sign-cert", bin, "--sign-key", bin)
	// A build that fails (no such binary) revokes the credential it created.
	it.fails(t, exitError, "package", "agent", "--format", "deb", "--group", "g", "--binary", "/nonexistent", "--version", "1.4.0", "--out", out)
	e.call("GET", "/api/v1/enrollments", e.admin, nil, 200, &list)
	for _, en := range list.Enrollments {
		if en.Group == "g" && en.State != "revoked" {
			t.Errorf("credential of a failed build left %s", en.State)
		}
	}
}
