package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNotifyCommands(t *testing.T) {
	sessions := []Session{{UID: 1000, User: "nurse", Bus: "unix:path=/run/user/1000/bus"}, {UID: 1001, User: "tty-only"}}
	cmds, err := notifyCommands("linux", sessions, "Fix this device", "Turn on disk encryption")
	if err != nil || len(cmds) != 1 {
		t.Fatalf("linux: %v %v", cmds, err)
	}
	if got := strings.Join(cmds[0], " "); got != "runuser -u nurse -- env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus notify-send --urgency=critical --app-name=Hale -- Fix this device Turn on disk encryption" {
		t.Fatalf("linux command %q", got)
	}
	cmds, err = notifyCommands("darwin", []Session{{UID: 501, User: "dr.grey"}}, `Say "hi"`, `back\slash`)
	if err != nil || len(cmds) != 1 || strings.Join(cmds[0][:6], " ") != "launchctl asuser 501 sudo -u dr.grey" ||
		cmds[0][8] != `display notification "back\\slash" with title "Say \"hi\""` {
		t.Fatalf("darwin: %q %v", cmds, err)
	}
	cmds, err = notifyCommands("windows", nil, "T", "B\x07\nline")
	if err != nil || strings.Join(cmds[0], "|") != "msg|*|/TIME:3600|T: B  line" {
		t.Fatalf("windows: %q %v", cmds, err)
	}
	if _, err := notifyCommands("linux", nil, "t", "b"); err != errNoSession {
		t.Fatalf("no session: %v", err)
	}
	if _, err := notifyCommands("plan9", sessions, "t", "b"); err == nil {
		t.Fatal("plan9 notified")
	}
	if got := clipText(strings.Repeat("é", 2000), 1000); len([]rune(got)) != 1000 {
		t.Fatalf("clip %d", len([]rune(got)))
	}
}

type fakeRunner struct{ calls [][]string }

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, append([]string{name}, args...))
	return nil, nil
}

type fakeNotifier struct{ titles, bodies []string }

func (f *fakeNotifier) Notify(_ context.Context, title, body string) error {
	f.titles, f.bodies = append(f.titles, title), append(f.bodies, body)
	return nil
}

// The user is told once when grace begins, once more at the warn time, again when a new
// grace period begins, and nothing while the device is compliant.
func TestWarnUserOnGrace(t *testing.T) {
	n := &fakeNotifier{}
	a := &Agent{log: slog.New(slog.DiscardHandler), notifier: n}
	now := time.Now()
	until := now.Add(2 * time.Hour)
	inGrace := &reportResponse{Accepted: true, InGrace: true, GraceUntil: until, WarnAt: until.Add(-30 * time.Minute),
		Reasons: []string{"encryption_off", "os_too_old"}}
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANG", "es_ES.UTF-8")
	ctx := context.Background()
	a.warnUser(ctx, inGrace)
	a.warnUser(ctx, inGrace)
	if len(n.titles) != 1 || !strings.HasPrefix(n.titles[0], "Corrija este dispositivo") ||
		n.bodies[0] != "Active el cifrado del disco; Actualice el software de su dispositivo" {
		t.Fatalf("grace start: %q %q", n.titles, n.bodies)
	}
	late := *inGrace
	late.WarnAt = now.Add(-time.Second)
	a.warnUser(ctx, &late)
	a.warnUser(ctx, &late)
	if len(n.titles) != 2 {
		t.Fatalf("warn time: %d notices", len(n.titles))
	}
	a.warnUser(ctx, &reportResponse{Accepted: true})
	a.warnUser(ctx, inGrace) // a new grace period after a compliant spell
	if len(n.titles) != 3 {
		t.Fatalf("new grace period: %d notices", len(n.titles))
	}
}

func TestDesktopNotifierRunsThroughRunner(t *testing.T) {
	r := &fakeRunner{}
	n := DesktopNotifier{Runner: r, GOOS: "linux", Sessions: func() []Session {
		return []Session{{UID: 1000, User: "a", Bus: "unix:path=/x"}, {UID: 1001, User: "b", Bus: "unix:path=/y"}}
	}}
	if err := n.Notify(context.Background(), "t", "b"); err != nil || len(r.calls) != 2 || r.calls[1][2] != "b" {
		t.Fatalf("%v %v", r.calls, err)
	}
}

func TestLinuxSessions(t *testing.T) {
	uid := os.Getuid()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(uid))
	os.MkdirAll(dir, 0o700)
	os.MkdirAll(filepath.Join(root, "not-a-uid"), 0o700)
	os.MkdirAll(filepath.Join(root, strconv.Itoa(uid+1)), 0o700) // no bus: no graphical session
	ln, err := net.Listen("unix", filepath.Join(dir, "bus"))
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	got := linuxSessions(root, 0)
	if len(got) != 1 || got[0].UID != uid || got[0].Bus != "unix:path="+filepath.Join(dir, "bus") {
		t.Fatalf("%+v", got)
	}
	if got := linuxSessions(root, uid+1); len(got) != 0 {
		t.Fatalf("below minUID: %+v", got)
	}
}
