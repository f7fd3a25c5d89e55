package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/policies"
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

type seenNotices struct {
	mu     sync.Mutex
	titles []string
}

func (n *seenNotices) Notify(_ context.Context, title, body string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.titles = append(n.titles, title+" | "+body)
	return nil
}

func (n *seenNotices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.titles...)
}

// The real agent against the real server: a device in grace warns its user on the desktop;
// past grace, the agent gets its page's link and opens emergency access with its certificate.
func TestAgentGraceNoticeLinkAndBreakGlass(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))
	e.applyPolicy(t, it, "encryption:\n  required: true\ngrace:\n  period: 1h\n  warn_before: 2h\n"+
		"break_glass:\n  allowed: true\n  duration: 1h\n  overridable: [encryption_off]\n")
	store, id := e.enrollOnly("dr.house", "icu")
	notices := &seenNotices{}
	collect := func(context.Context) (*policies.Posture, []agent.CollectorError) {
		now := time.Now()
		return &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: now,
			DiskEncrypted: policies.Observe(false, policies.ProvenanceAgent, now), SwapEncrypted: policies.Observe(true, policies.ProvenanceAgent, now)}, nil
	}
	a, err := agent.New(store, collect, agent.WithNotifier(notices), agent.WithRequestTimeout(10*time.Second),
		agent.WithIntervalBounds(50*time.Millisecond, time.Second), agent.WithCollectInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// warn_before is longer than the grace period: the first notice is also the last warning.
	waitFor(t, "a desktop notice of the grace period", func() bool { return len(notices.all()) > 0 })
	if got := notices.all(); len(got) != 1 || !strings.Contains(got[0], "Fix this device by") || !strings.Contains(got[0], "Turn on disk encryption") {
		t.Fatalf("notices %q", got)
	}

	link, err := a.MyDeviceLink(ctx)
	if err != nil || !strings.Contains(link.URL, "/my-device/") {
		t.Fatalf("link %+v %v", link, err)
	}
	// In grace it is allowed: emergency access is not needed, and says so.
	if _, err := a.BreakGlass(ctx, "rapid response, bed 3", ""); err == nil || !strings.Contains(err.Error(), "break-glass-not-needed") {
		t.Fatalf("break-glass in grace: %v", err)
	}
	e.applyPolicy(t, it, "encryption:\n  required: true\nbreak_glass:\n  allowed: true\n  duration: 1h\n  overridable: [encryption_off]\n")
	waitFor(t, "the device denied", func() bool {
		var ans struct{ Allow bool }
		e.call("GET", "/api/v1/devices/"+id+"/access", e.admin, nil, 200, &ans)
		return !ans.Allow
	})
	u, err := a.BreakGlass(ctx, "rapid response, bed 3", "30m")
	if err != nil || u.DeviceID != id || u.Person != "dr.house" {
		t.Fatalf("break-glass: %+v %v", u, err)
	}
}
