package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/remediation"
)

// Notifier shows the device's signed-in user a desktop notification. The agent runs as a
// system daemon, so it reaches the user's session through the OS's own door; see
// DesktopNotifier for what it does per OS.
type Notifier interface {
	Notify(ctx context.Context, title, body string) error
}

// WithNotifier sets how the agent warns its user that the device is in grace and will be
// denied (default: DesktopNotifier for this OS, run by the agent's Runner).
func WithNotifier(n Notifier) Option { return func(a *Agent) { a.notifier = n } }

// Session is a user signed in at the device's screen.
type Session struct {
	UID  int
	User string
	// Bus is the user's D-Bus session bus address (Linux).
	Bus string
}

// DesktopNotifier is a Notifier that runs the OS's notification command through runner as each
// signed-in user (sessions lists them):
//
//   - Linux: notify-send, as the user (runuser), on the user's session bus
//     (/run/user/UID/bus); sessions without a bus (no graphical login) are skipped.
//   - macOS: osascript "display notification", in the console user's GUI session
//     (launchctl asuser UID, then sudo -u USER): a LaunchDaemon cannot post to Notification
//     Center itself.
//   - Windows: msg.exe to every session (a service runs in session 0, which cannot show
//     toasts; msg.exe shows a message box in each user's session). Windows Home has no
//     msg.exe: the notice is then only in the agent's log.
//
// Other systems return an error.
type DesktopNotifier struct {
	Runner   Runner
	GOOS     string
	Sessions func() []Session
}

// Notify implements Notifier.
func (n DesktopNotifier) Notify(ctx context.Context, title, body string) error {
	cmds, err := notifyCommands(n.GOOS, n.Sessions(), title, body)
	if err != nil {
		return err
	}
	var errs []error
	for _, argv := range cmds {
		if out, err := n.Runner.Run(ctx, argv[0], argv[1:]...); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (%s)", argv[0], err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// errNoSession: nobody is signed in where a notification could show.
var errNoSession = errors.New("agent: no signed-in user session to notify")

// notifyCommands are the commands that show title and body to each session on goos.
func notifyCommands(goos string, sessions []Session, title, body string) ([][]string, error) {
	title, body = clipText(title, 120), clipText(body, 1000)
	var cmds [][]string
	switch goos {
	case "linux":
		for _, s := range sessions {
			if s.Bus == "" || s.User == "" {
				continue
			}
			cmds = append(cmds, []string{"runuser", "-u", s.User, "--", "env", "DBUS_SESSION_BUS_ADDRESS=" + s.Bus,
				"notify-send", "--urgency=critical", "--app-name=Hale", "--", title, body})
		}
	case "darwin":
		for _, s := range sessions {
			if s.User == "" || s.UID <= 0 {
				continue
			}
			script := "display notification " + appleScriptString(body) + " with title " + appleScriptString(title)
			cmds = append(cmds, []string{"launchctl", "asuser", strconv.Itoa(s.UID), "sudo", "-u", s.User, "osascript", "-e", script})
		}
	case "windows":
		// msg.exe reads the message from its arguments; * is every session.
		cmds = append(cmds, []string{"msg", "*", "/TIME:3600", title + ": " + body})
	default:
		return nil, fmt.Errorf("agent: desktop notifications are not supported on %s", goos)
	}
	if len(cmds) == 0 {
		return nil, errNoSession
	}
	return cmds, nil
}

// appleScriptString quotes s as an AppleScript string literal.
func appleScriptString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// clipText bounds s and drops control characters: the text comes from the server.
func clipText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

// linuxSessions are the users from minUID up with a session bus under root (/run/user;
// system users, below 1000, have no desktop).
func linuxSessions(root string, minUID int) []Session {
	dirs, _ := os.ReadDir(root)
	var out []Session
	for _, d := range dirs {
		uid, err := strconv.Atoi(d.Name())
		if err != nil || uid < minUID {
			continue
		}
		bus := filepath.Join(root, d.Name(), "bus")
		if fi, err := os.Stat(bus); err != nil || fi.Mode()&os.ModeSocket == 0 {
			continue
		}
		u, err := user.LookupId(d.Name())
		if err != nil {
			continue
		}
		out = append(out, Session{UID: uid, User: u.Username, Bus: "unix:path=" + bus})
	}
	return out
}

// defaultNotifier is the DesktopNotifier of goos.
func defaultNotifier(goos string, runner Runner) Notifier {
	sessions := func() []Session { return nil }
	switch goos {
	case "linux":
		sessions = func() []Session { return linuxSessions("/run/user", 1000) }
	case "darwin":
		sessions = darwinSessions
	}
	return DesktopNotifier{Runner: runner, GOOS: goos, Sessions: sessions}
}

// graceNotice decides, after a report's answer, whether to warn the user: once when a grace
// period begins (or its deadline moves) and once when its warn time has come. It returns the
// notification's title and body, or ok false.
func (g *graceState) notice(resp *reportResponse, now time.Time, lang string) (title, body string, ok bool) {
	if !resp.InGrace || resp.GraceUntil.IsZero() {
		*g = graceState{}
		return "", "", false
	}
	c := remediation.Default()
	lang = c.Match(lang)
	var what []string
	for _, it := range c.Items(resp.Reasons, remediation.Request{Lang: lang}) {
		what = append(what, it.Title)
	}
	deadline := resp.GraceUntil.Local().Format("Mon 2 Jan 15:04")
	switch {
	case !g.until.Equal(resp.GraceUntil):
		g.until, g.warned = resp.GraceUntil, false
		if !resp.WarnAt.IsZero() && !now.Before(resp.WarnAt) {
			g.warned = true
		}
	case !g.warned && !resp.WarnAt.IsZero() && !now.Before(resp.WarnAt):
		g.warned = true
	default:
		return "", "", false
	}
	title = "Fix this device by " + deadline
	if lang == "es" {
		title = "Corrija este dispositivo antes del " + deadline
	}
	return title, strings.Join(what, "; "), true
}

// graceState is what the agent already told its user about the current grace period.
type graceState struct {
	until  time.Time
	warned bool
}

// warnUser shows the grace notice of a report's answer, if one is due.
func (a *Agent) warnUser(ctx context.Context, resp *reportResponse) {
	if a.notifier == nil {
		return
	}
	title, body, ok := a.grace.notice(resp, time.Now(), localeLanguage())
	if !ok {
		return
	}
	a.log.Warn("device in grace: warning the user", "grace_until", resp.GraceUntil, "reasons", resp.Reasons)
	if err := a.notifier.Notify(ctx, title, body); err != nil {
		a.log.Warn("could not show the grace notice on the desktop", "err", err)
	}
	a.emit(Event{Kind: "grace-notice"})
}

// localeLanguage is the agent's locale as a language tag ("es_ES.UTF-8" -> "es-ES").
func localeLanguage() string {
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s := os.Getenv(v); s != "" && s != "C" && s != "POSIX" {
			s, _, _ = strings.Cut(s, ".")
			return strings.ReplaceAll(s, "_", "-")
		}
	}
	return ""
}
