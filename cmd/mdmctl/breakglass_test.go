package main

import (
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/applesim"
)

// Security grants emergency access for a Mac its policy denies (macOS too old), lists it as
// unreviewed, and a second security person revokes it; the first may not review their own
// grant, and the refused requests exit with the right status.
func TestBreakGlass(t *testing.T) {
	e := newEnv(t)
	admin := e.as(e.admin)
	both, _, _ := e.pushCertFiles()
	admin.ok(t, "pushcert", "upload", both)
	it := e.as(e.token("it"))
	e.applyPolicy(t, it, "os:\n  macos: \"99.0\"\nbreak_glass:\n  allowed: true\n  duration: 2h\n  overridable: [os_too_old]\n")
	dev := e.appleDevice(applesim.WithState(applesim.MacOSState()))
	waitFor(t, "the Mac denied for os_too_old", func() bool {
		var a struct {
			Allow   bool
			Reasons []struct{ Code string }
		}
		e.call("GET", "/api/v1/devices/"+dev.UDID()+"/access", e.admin, nil, 200, &a)
		return !a.Allow && len(a.Reasons) > 0 && a.Reasons[len(a.Reasons)-1].Code == "os_too_old"
	})
	first, second := e.as(e.token("security")), e.as(e.token("security"))

	first.fails(t, exitUsage, "break-glass", "grant", dev.UDID(), "--reason", "short")
	first.fails(t, exitUsage, "break-glass", "grant", dev.UDID(), "--reason", "surgeon's Mac in theatre 3", "--duration", "3h")
	it.fails(t, exitAuth, "break-glass", "grant", dev.UDID(), "--reason", "surgeon's Mac in theatre 3")
	r := first.ok(t, "break-glass", "grant", dev.UDID(), "--reason", "surgeon's Mac in theatre 3", "--duration", "1h")
	if !strings.Contains(r.stdout, "os_too_old") || !strings.Contains(r.stdout, "awaiting") {
		t.Fatalf("grant: %s", r.stdout)
	}
	var list struct {
		Uses []struct{ ID, Channel string }
	}
	first.okJSON(t, &list, "break-glass", "list", "--unreviewed", "--older-than", "0s")
	if len(list.Uses) != 1 || list.Uses[0].Channel != "security" {
		t.Fatalf("list: %+v", list)
	}
	if out := first.ok(t, "break-glass", "list", "--unreviewed").stdout; strings.Contains(out, list.Uses[0].ID) {
		t.Fatalf("a use minutes old is listed as a day overdue:\n%s", out)
	}
	id := list.Uses[0].ID
	first.fails(t, exitAuth, "break-glass", "review", id, "--revoke")
	r = second.ok(t, "break-glass", "review", id, "--revoke", "--note", "not an emergency")
	if !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("review: %s", r.stdout)
	}
	second.fails(t, exitConflict, "break-glass", "review", id)
}
