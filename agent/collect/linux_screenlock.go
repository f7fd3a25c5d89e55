package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/policies"
)

// --- screen lock ---

// session is the graphical login session whose screen lock is reported.
type session struct {
	UID     int
	User    string
	Desktop string
	Home    string
}

// graphicalSession finds the user's graphical logind session, preferring the active one. A
// machine with none (a server, or nobody logged in) has no screen to lock: ok is false.
func graphicalSession(env *Env) (s session, ok bool, err error) {
	ents, err := env.ReadDir("/run/systemd/sessions")
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	found := false
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".ref") {
			continue
		}
		data, err := env.ReadFile("/run/systemd/sessions/" + e.Name())
		if err != nil {
			continue // sessions come and go while we look
		}
		kv, err := parseKeyValue(data)
		if err != nil {
			continue
		}
		switch kv["TYPE"] {
		case "x11", "wayland", "mir":
		default:
			continue
		}
		if class := kv["CLASS"]; (class != "" && class != "user") || kv["STATE"] == "closing" {
			continue // greeters and sessions being torn down have no user settings to read
		}
		uid, err := strconv.Atoi(kv["UID"])
		if err != nil || uid < 0 {
			continue
		}
		if found && kv["ACTIVE"] != "1" {
			continue
		}
		s, found = session{UID: uid, User: kv["USER"], Desktop: kv["DESKTOP"]}, true
	}
	if !found {
		return s, false, nil
	}
	data, err := env.ReadFile("/etc/passwd")
	if err != nil {
		return s, false, err
	}
	users, err := parsePasswd(data)
	if err != nil {
		return s, false, err
	}
	for _, u := range users {
		if u.UID == s.UID {
			s.Home = u.Home
			if s.User == "" {
				s.User = u.Name
			}
			return s, true, nil
		}
	}
	return s, false, fmt.Errorf("session user %d is not in /etc/passwd (directory user?)", s.UID)
}

// screenLock is a desktop's effective screen-lock setting. Timeout is zero when disabled.
type screenLock struct {
	Enabled bool
	Timeout time.Duration
}

// apply sets the screen-lock claims. A disabled lock has no timeout claim, so that a policy's
// "at most N minutes" cannot be met by a zero.
func (sl screenLock) apply(env *Env, p *Partial) {
	p.ScreenLockEnabled = observe(env, sl.Enabled)
	if sl.Enabled {
		p.ScreenLockTimeout = observe(env, policies.Duration(sl.Timeout))
	}
}

func collectLinuxScreenLock(ctx context.Context, env *Env) (Partial, error) {
	var p Partial
	s, ok, err := graphicalSession(env)
	if err != nil || !ok {
		return p, err // headless: no screen to lock, so the claims stay unknown
	}
	desk := strings.ToLower(s.Desktop)
	var sl screenLock
	switch {
	case strings.Contains(desk, "kde") || strings.Contains(desk, "plasma"):
		sl, err = kdeScreenLock(env, s)
	case desk == "" || strings.Contains(desk, "gnome") || strings.Contains(desk, "ubuntu") || strings.Contains(desk, "pop"):
		sl, err = gnomeScreenLock(ctx, env, s)
	default:
		err = fmt.Errorf("desktop %q is not supported; screen lock unknown", truncate(s.Desktop))
	}
	if err != nil {
		return p, err
	}
	sl.apply(env, &p)
	return p, nil
}

// The GNOME settings that decide when the screen locks.
const (
	gnomeScreensaver = "org.gnome.desktop.screensaver"
	gnomeSession     = "org.gnome.desktop.session"
)

// gnomeScreenLock reads the session user's effective settings with gsettings (which already
// applies dconf's system defaults and locks). When gsettings cannot be run for that user, the
// values an administrator locked in the dconf system databases are used: the user cannot
// change those.
func gnomeScreenLock(ctx context.Context, env *Env, s session) (screenLock, error) {
	enabledOut, err1 := gsettingsGet(ctx, env, s, gnomeScreensaver, "lock-enabled")
	idleOut, err2 := gsettingsGet(ctx, env, s, gnomeSession, "idle-delay")
	delayOut, err3 := gsettingsGet(ctx, env, s, gnomeScreensaver, "lock-delay")
	if err := errors.Join(err1, err2, err3); err != nil {
		sl, lerr := dconfLockedScreenLock(env)
		if lerr != nil {
			return sl, fmt.Errorf("gsettings: %w; dconf locks: %w", err, lerr)
		}
		return sl, nil
	}
	enabled, err1 := parseGsettingsBool(enabledOut)
	idle, err2 := parseGsettingsUint(idleOut)
	delay, err3 := parseGsettingsUint(delayOut)
	if err := errors.Join(err1, err2, err3); err != nil {
		return screenLock{}, err
	}
	return gnomeLock(enabled, idle, delay), nil
}

// gnomeLock combines GNOME's settings: the screen blanks after idle-delay seconds (0: never) and
// locks lock-delay seconds later.
func gnomeLock(enabled bool, idle, delay uint32) screenLock {
	if !enabled || idle == 0 {
		return screenLock{}
	}
	return screenLock{Enabled: true, Timeout: time.Duration(uint64(idle)+uint64(delay)) * time.Second}
}

// gsettingsGet runs gsettings as the session user: directly when the agent is that user, through
// runuser when it is root.
func gsettingsGet(ctx context.Context, env *Env, s session, schema, key string) ([]byte, error) {
	var out Output
	var err error
	switch euid := geteuid(); euid {
	case s.UID:
		out, err = env.Runner.Run(ctx, toolGsettings, "get", schema, key)
	case 0:
		rt := fmt.Sprintf("/run/user/%d", s.UID)
		out, err = env.Runner.Run(ctx, toolRunuser, "-u", s.User, "--", toolEnv,
			"HOME="+s.Home, "XDG_RUNTIME_DIR="+rt, "DBUS_SESSION_BUS_ADDRESS=unix:path="+rt+"/bus",
			toolGsettings, "get", schema, key)
	default:
		return nil, fmt.Errorf("agent runs as uid %d and cannot read uid %d's settings; run it as root", euid, s.UID)
	}
	if err != nil {
		return nil, err
	}
	return out.Stdout, nil
}

// dconfLockedScreenLock reads the values locked in /etc/dconf/db/*.d: keyfiles set them, locks
// files forbid users from overriding them. It fails unless lock-enabled and idle-delay are both
// locked (and lock-delay too), since otherwise the user's own value decides.
func dconfLockedScreenLock(env *Env) (screenLock, error) {
	const (
		kEnabled = "/org/gnome/desktop/screensaver/lock-enabled"
		kIdle    = "/org/gnome/desktop/session/idle-delay"
		kDelay   = "/org/gnome/desktop/screensaver/lock-delay"
	)
	dbs, err := env.ReadDir("/etc/dconf/db")
	if err != nil {
		return screenLock{}, err
	}
	locked := map[string]bool{}
	values := map[string]string{}
	for _, db := range dbs {
		if !db.IsDir() || !strings.HasSuffix(db.Name(), ".d") {
			continue
		}
		dir := "/etc/dconf/db/" + db.Name()
		if data, err := env.ReadFile(dir + "/locks"); err == nil {
			// dconf reads every file in locks/; a plain "locks" file is accepted for older setups.
			addLocks(locked, data)
		}
		lockFiles, _ := env.ReadDir(dir + "/locks")
		for _, lf := range lockFiles {
			if data, err := env.ReadFile(dir + "/locks/" + lf.Name()); err == nil {
				addLocks(locked, data)
			}
		}
		files, err := env.ReadDir(dir)
		if err != nil {
			return screenLock{}, err
		}
		for _, f := range files {
			if f.IsDir() {
				continue
			}
			data, err := env.ReadFile(dir + "/" + f.Name())
			if err != nil {
				return screenLock{}, err
			}
			kf, err := parseINI(data)
			if err != nil {
				return screenLock{}, fmt.Errorf("%s/%s: %w", dir, f.Name(), err)
			}
			for g, kv := range kf.groups {
				for k, v := range kv {
					values["/"+strings.Trim(g, "/")+"/"+k] = v
				}
			}
		}
	}
	if !locked[kEnabled] || !locked[kIdle] {
		return screenLock{}, errors.New("lock-enabled and idle-delay are not both locked by the administrator")
	}
	enabled, err1 := parseBoolWord(values[kEnabled])
	idle, err2 := parseGVariantUint(values[kIdle])
	// An unlocked lock-delay lets the user postpone locking without bound.
	var delay uint32
	var err3 error
	if locked[kDelay] {
		delay, err3 = parseGVariantUint(values[kDelay])
	} else {
		err3 = errors.New("lock-delay is not locked by the administrator")
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return screenLock{}, fmt.Errorf("dconf: %w", err)
	}
	return gnomeLock(enabled, idle, delay), nil
}

func addLocks(locked map[string]bool, data []byte) {
	keys, err := parseDconfLocks(data)
	if err != nil {
		return
	}
	for _, k := range keys {
		locked[k] = true
	}
}

// kdeScreenLock reads kscreenlockerrc: KDE's defaults, then /etc/xdg, then the user's file
// unless the administrator marked the setting immutable ([$i]). The screen locks Timeout
// minutes after the last input, and LockGrace seconds after that it needs the password.
// Locking on resume is required too: a laptop that wakes unlocked is not locked.
func kdeScreenLock(env *Env, s session) (screenLock, error) {
	autolock, onResume, timeoutMin, graceSec := "true", "true", "5", "5"
	var system iniFile
	for i, file := range []string{"/etc/xdg/kscreenlockerrc", path.Join(s.Home, ".config/kscreenlockerrc")} {
		data, err := env.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return screenLock{}, err
		}
		kf, err := parseINI(data)
		if err != nil {
			return screenLock{}, fmt.Errorf("%s: %w", file, err)
		}
		set := func(dst *string, key string) {
			if i == 1 && system.immutable["Daemon/"+key] {
				return // the administrator fixed this key
			}
			if v, ok := kf.get("Daemon", key); ok {
				*dst = v
			}
		}
		set(&autolock, "Autolock")
		set(&onResume, "LockOnResume")
		set(&timeoutMin, "Timeout")
		set(&graceSec, "LockGrace")
		if i == 0 {
			system = kf
			if kf.immutable["Daemon"] {
				break // the user's file cannot override an immutable system group
			}
		}
	}
	al, err1 := parseBoolWord(autolock)
	or, err2 := parseBoolWord(onResume)
	tm, err3 := strconv.ParseUint(timeoutMin, 10, 16)
	gr, err4 := strconv.ParseUint(graceSec, 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return screenLock{}, fmt.Errorf("kscreenlockerrc: %w", err)
	}
	if !al || !or || tm == 0 {
		return screenLock{}, nil
	}
	return screenLock{Enabled: true, Timeout: time.Duration(tm)*time.Minute + time.Duration(gr)*time.Second}, nil
}

// --- local passwords ---
