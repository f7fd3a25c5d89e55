package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/policies"
)

// LinuxCollectors returns the collectors of a Linux machine. They only read files through Env
// and run tools through its Runner, so they work against a fixture root on any OS.
func LinuxCollectors() []Collector {
	return []Collector{
		collectorFunc{name: "linux-os", fn: collectLinuxOS},
		collectorFunc{name: "linux-disk", fn: collectLinuxDisk},
		collectorFunc{name: "linux-screenlock", fn: collectLinuxScreenLock},
		collectorFunc{name: "linux-password", fn: collectLinuxPassword},
		collectorFunc{name: "linux-updates", timeout: 60 * time.Second, fn: collectLinuxUpdates},
		collectorFunc{name: "linux-reboot", fn: collectLinuxReboot},
		collectorFunc{name: "linux-firewall", fn: collectLinuxFirewall},
		collectorFunc{name: "linux-boot", fn: collectLinuxBoot},
		collectorFunc{name: "agent-integrity", fn: collectAgentIntegrity},
	}
}

// Absolute paths of the Linux tools the collectors run.
const (
	toolAptCheck        = "/usr/lib/update-notifier/apt-check"
	toolDnf             = "/usr/bin/dnf"
	toolNeedsRestarting = "/usr/bin/needs-restarting"
	toolFirewallCmd     = "/usr/bin/firewall-cmd"
	toolNft             = "/usr/sbin/nft"
	toolGsettings       = "/usr/bin/gsettings"
	toolRunuser         = "/usr/sbin/runuser"
	toolEnv             = "/usr/bin/env"
)

// geteuid is replaced in tests to exercise both ways of reading a session user's settings.
var geteuid = os.Geteuid

func collectLinuxOS(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	data, err := env.ReadFile("/etc/os-release")
	if errors.Is(err, fs.ErrNotExist) {
		data, err = env.ReadFile("/usr/lib/os-release")
	}
	if err != nil {
		return p, fmt.Errorf("os-release: %w", err)
	}
	kv, err := parseKeyValue(data)
	if err != nil {
		return p, fmt.Errorf("os-release: %w", err)
	}
	info := policies.OSInfo{Distribution: kv["ID"], Version: kv["VERSION_ID"], Build: kv["BUILD_ID"]}
	if info.Distribution == "" {
		info.Distribution = "linux" // os-release(5): ID defaults to "linux"
	}
	var errs []error
	if k, err := env.ReadFile("/proc/sys/kernel/osrelease"); err == nil && len(k) < 256 {
		info.Kernel = strings.TrimSpace(string(k))
	} else if err != nil {
		errs = append(errs, fmt.Errorf("kernel release: %w", err))
	}
	p.OS = observe(env, info)
	return p, errors.Join(errs...)
}

// --- disk and swap encryption ---

// encryptingUUIDPrefixes are the dm/uuid prefixes cryptsetup gives to devices that encrypt.
// CRYPT-VERITY and CRYPT-INTEGRITY devices only authenticate, so they are looked through.
var encryptingUUIDPrefixes = []string{"CRYPT-LUKS1", "CRYPT-LUKS2", "CRYPT-PLAIN", "CRYPT-BITLK", "CRYPT-TCRYPT"}

// maxBlockDepth bounds the walk down the slaves/ tree (LVM on LUKS on RAID is depth 3).
const maxBlockDepth = 16

func collectLinuxDisk(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	data, err := env.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return p, fmt.Errorf("root and swap encryption unknown: %w", err)
	}
	mounts, err := parseMountinfo(data)
	if err != nil {
		return p, fmt.Errorf("root and swap encryption unknown: %w", err)
	}
	var errs []error
	if m, ok := mountOf(mounts, "/"); !ok {
		errs = append(errs, errors.New("root encryption unknown: no mount for / in mountinfo"))
	} else if enc, err := mountEncrypted(env, m); err != nil {
		errs = append(errs, fmt.Errorf("root encryption unknown: %w", err))
	} else {
		p.DiskEncrypted = observe(env, enc)
	}
	if enc, err := swapEncrypted(env, mounts); err != nil {
		errs = append(errs, fmt.Errorf("swap encryption unknown: %w", err))
	} else {
		p.SwapEncrypted = observe(env, enc)
	}
	return p, errors.Join(errs...)
}

// mountOf returns the mount that holds file: the longest mount point that is a prefix of it,
// the last one listed when a mount point is mounted over.
func mountOf(mounts []mountEntry, file string) (mountEntry, bool) {
	best, found := mountEntry{}, false
	for _, m := range mounts {
		mp := m.MountPoint
		if file == mp || mp == "/" || strings.HasPrefix(file, mp+"/") {
			if !found || len(mp) >= len(best.MountPoint) {
				best, found = m, true
			}
		}
	}
	return best, found
}

// mountDevice returns the sysfs directory (as seen from the root) of the block device
// behind a mount. Filesystems with anonymous device numbers (btrfs, major 0) are found by their
// source device instead.
func mountDevice(env *Env, m mountEntry) (string, error) {
	if m.Major != 0 {
		return env.Realpath(fmt.Sprintf("/sys/dev/block/%d:%d", m.Major, m.Minor))
	}
	if !strings.HasPrefix(m.Source, "/dev/") {
		return "", fmt.Errorf("%s is on %s %q, which is not a block device (container or network root?)", m.MountPoint, m.FSType, truncate(m.Source))
	}
	return deviceDir(env, m.Source)
}

// deviceDir returns the sysfs directory of a /dev path: /dev/NAME is /sys/class/block/NAME;
// /dev/mapper/NAME is the dm device whose dm/name is NAME (udev's symlinks are followed first
// when they exist).
func deviceDir(env *Env, dev string) (string, error) {
	if real, err := env.Realpath(dev); err == nil {
		dev = real
	}
	if name, ok := strings.CutPrefix(dev, "/dev/mapper/"); ok {
		ents, err := env.ReadDir("/sys/block")
		if err != nil {
			return "", fmt.Errorf("find %s: %w", dev, err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "dm-") {
				continue
			}
			b, err := env.ReadFile("/sys/block/" + e.Name() + "/dm/name")
			if err == nil && strings.TrimSpace(string(b)) == name {
				return env.Realpath("/sys/block/" + e.Name())
			}
		}
		return "", fmt.Errorf("no device-mapper device named %q in /sys/block", name)
	}
	name, ok := strings.CutPrefix(dev, "/dev/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("cannot map %q to a block device", truncate(dev))
	}
	dir, err := env.Realpath("/sys/class/block/" + name)
	if err != nil {
		return "", err
	}
	if ok, err := env.Exists(dir + "/dev"); err != nil || !ok {
		return "", fmt.Errorf("%s: no block device %s in /sys/class/block", dev, name)
	}
	return dir, nil
}

func mountEncrypted(env *Env, m mountEntry) (bool, error) {
	dir, err := mountDevice(env, m)
	if err != nil {
		return false, err
	}
	return blockEncrypted(env, dir, 0)
}

// blockEncrypted reports whether the block device at sysfs dir is, or sits entirely on, a
// dm-crypt device. A device with several slaves (LVM across PVs, RAID) is encrypted only if all
// of them are, because its data may live on any of them.
func blockEncrypted(env *Env, dir string, depth int) (bool, error) {
	if depth > maxBlockDepth {
		return false, fmt.Errorf("%s: block device stack deeper than %d", dir, maxBlockDepth)
	}
	uuid, err := env.ReadFile(dir + "/dm/uuid")
	switch {
	case err == nil:
		u := strings.TrimSpace(string(uuid))
		for _, pre := range encryptingUUIDPrefixes {
			if strings.HasPrefix(u, pre+"-") || u == pre {
				return true, nil
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	slaves, err := env.ReadDir(dir + "/slaves")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if len(slaves) == 0 {
		// A partition's stack is its disk's: md0p1 of an md0 built on LUKS members.
		part, err := env.Exists(dir + "/partition")
		if err != nil || !part {
			return false, err
		}
		return blockEncrypted(env, path.Dir(dir), depth+1)
	}
	for _, s := range slaves {
		sub, err := env.Realpath(dir + "/slaves/" + s.Name())
		if err != nil {
			return false, err
		}
		enc, err := blockEncrypted(env, sub, depth+1)
		if err != nil || !enc {
			return false, err
		}
	}
	return true, nil
}

// swapEncrypted reports whether every active swap area is encrypted: partitions by their block
// stack, swap files by the filesystem that holds them. No swap, and zram (memory), leave nothing
// on disk and count as encrypted.
func swapEncrypted(env *Env, mounts []mountEntry) (bool, error) {
	data, err := env.ReadFile("/proc/swaps")
	if err != nil {
		return false, err
	}
	swaps, err := parseSwaps(data)
	if err != nil {
		return false, err
	}
	for _, s := range swaps {
		var enc bool
		switch {
		case strings.HasPrefix(s.Filename, "/dev/zram"):
			enc = true
		case s.Type == "partition":
			dir, err := deviceDir(env, s.Filename)
			if err != nil {
				return false, err
			}
			if enc, err = blockEncrypted(env, dir, 0); err != nil {
				return false, err
			}
		case s.Type == "file":
			m, ok := mountOf(mounts, s.Filename)
			if !ok {
				return false, fmt.Errorf("no mount holds swap file %s", s.Filename)
			}
			if enc, err = mountEncrypted(env, m); err != nil {
				return false, fmt.Errorf("swap file %s: %w", s.Filename, err)
			}
		default:
			return false, fmt.Errorf("swap %s has unknown type %q", s.Filename, truncate(s.Type))
		}
		if !enc {
			return false, nil
		}
	}
	return true, nil
}

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

// firstHumanUID is where Debian, Fedora and Arch start regular users (login.defs UID_MIN).
const firstHumanUID = 1000

// collectLinuxPassword reports whether every local user who can log in interactively (uid from
// 1000, not nobody, with a login shell) has a usable password in /etc/shadow. With no such user
// (accounts come from a directory, or only root exists) the claim stays unknown.
func collectLinuxPassword(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	pw, err := env.ReadFile("/etc/passwd")
	if err != nil {
		return p, err
	}
	users, err := parsePasswd(pw)
	if err != nil {
		return p, err
	}
	sh, err := env.ReadFile("/etc/shadow")
	if err != nil {
		return p, fmt.Errorf("/etc/shadow (the agent must run as root): %w", err)
	}
	hashes, err := parseShadow(sh)
	if err != nil {
		return p, err
	}
	all, any := true, false
	for _, u := range users {
		if u.UID < firstHumanUID || u.UID == 65534 || !loginShell(u.Shell) {
			continue
		}
		any = true
		if !usablePassword(hashes[u.Name]) {
			all = false
		}
	}
	if any {
		p.PasscodePresent = observe(env, all)
	}
	rules, known, err := linuxPasswordRules(env)
	if err != nil {
		return p, err
	}
	if known {
		p.PasswordRules = observe(env, rules)
	}
	return p, nil
}

// pamPasswordStacks are the files, by distribution family, whose "password" lines decide how a
// new password is checked: Debian and Ubuntu, then Fedora, RHEL and Arch.
var pamPasswordStacks = []string{"/etc/pam.d/common-password", "/etc/pam.d/system-auth", "/etc/pam.d/passwd"}

// linuxPasswordRules reads what PAM enforces for new passwords: pam_pwquality (or the older
// pam_cracklib) with its options and /etc/security/pwquality.conf. With no PAM stack to read
// (a container) the rules are unknown; with a stack that checks no quality they are observed as
// not enforced.
func linuxPasswordRules(env *Env) (policies.PasswordRules, bool, error) {
	for _, name := range pamPasswordStacks {
		data, err := env.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return policies.PasswordRules{}, false, err
		}
		module, args := parsePAMQuality(data)
		if module == "" {
			return policies.PasswordRules{Enforced: false}, true, nil
		}
		conf := map[string]string{}
		if module == "pam_pwquality.so" {
			// The module's own options win over the configuration files, which apply in order.
			files := []string{"/etc/security/pwquality.conf"}
			if entries, err := env.ReadDir("/etc/security/pwquality.conf.d"); err == nil {
				for _, e := range entries {
					if strings.HasSuffix(e.Name(), ".conf") {
						files = append(files, "/etc/security/pwquality.conf.d/"+e.Name())
					}
				}
			}
			for _, f := range files {
				data, err := env.ReadFile(f)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return policies.PasswordRules{}, false, err
				}
				kv, err := parseKeyValue(data)
				if err != nil {
					return policies.PasswordRules{}, false, err
				}
				maps.Copy(conf, kv)
			}
		}
		maps.Copy(conf, args)
		return passwordRules(module, conf), true, nil
	}
	return policies.PasswordRules{}, false, nil
}

// --- updates and reboot ---

// collectLinuxUpdates asks the package manager how many security updates are pending: apt
// (Debian, Ubuntu) through update-notifier's apt-check, or dnf from its metadata cache (so the
// agent never triggers a metadata download). Other distributions leave the claim unknown.
func collectLinuxUpdates(ctx context.Context, env *Env) (Partial, error) {
	var p Partial
	out, err := env.Runner.Run(ctx, toolAptCheck)
	if err == nil {
		n, err := parseAptCheck(out.Stderr)
		if err != nil {
			return p, err
		}
		p.PendingSecurity = observe(env, n)
		return p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	out, err = env.Runner.Run(ctx, toolDnf, "-q", "-C", "updateinfo", "list", "--security")
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("dnf updateinfo (run `dnf makecache` if the cache is empty): %w", err)
	}
	if out.Truncated {
		return p, errors.New("dnf updateinfo: output too large")
	}
	n, err := parseDnfSecurity(out.Stdout)
	if err != nil {
		return p, err
	}
	p.PendingSecurity = observe(env, n)
	return p, nil
}

// collectLinuxReboot reports a pending reboot: Debian's /var/run/reboot-required flag file
// (dpkg systems only, where its absence means no reboot), or dnf-utils' needs-restarting -r,
// which exits 1 when a reboot is needed.
func collectLinuxReboot(ctx context.Context, env *Env) (Partial, error) {
	var p Partial
	dpkg, err := env.Exists("/var/lib/dpkg/status")
	if err != nil {
		return p, err
	}
	if dpkg {
		req, err := env.Exists("/var/run/reboot-required")
		if err != nil {
			return p, err
		}
		p.RebootRequired = observe(env, req)
		return p, nil
	}
	_, err = env.Runner.Run(ctx, toolNeedsRestarting, "-r")
	var ee *ExitError
	switch {
	case err == nil:
		p.RebootRequired = observe(env, false)
	case errors.As(err, &ee) && ee.Code == 1:
		p.RebootRequired = observe(env, true)
	case errors.Is(err, fs.ErrNotExist):
	default:
		return p, err
	}
	return p, nil
}

// --- firewall ---

// collectLinuxFirewall reports a host firewall: ufw enabled in its config, firewalld running,
// or an nftables input chain that drops or rejects. Only a readable nftables ruleset can say
// "no firewall"; otherwise the claim stays unknown.
func collectLinuxFirewall(ctx context.Context, env *Env) (Partial, error) {
	var p Partial
	var errs []error
	if data, err := env.ReadFile("/etc/ufw/ufw.conf"); err == nil {
		kv, err := parseKeyValue(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("ufw.conf: %w", err))
		} else if strings.EqualFold(kv["ENABLED"], "yes") {
			p.FirewallEnabled = observe(env, true)
			return p, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	out, err := env.Runner.Run(ctx, toolFirewallCmd, "--state")
	var ee *ExitError
	if err == nil || errors.As(err, &ee) {
		running, perr := parseFirewallCmdState(out.Stdout)
		if perr == nil && running {
			p.FirewallEnabled = observe(env, true)
			return p, nil
		}
		if perr != nil {
			errs = append(errs, perr)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	out, err = env.Runner.Run(ctx, toolNft, "list", "ruleset")
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("nft list ruleset: %w", err))
	case out.Truncated:
		errs = append(errs, errors.New("nft list ruleset: output too large"))
	default:
		on, err := parseNftRuleset(out.Stdout)
		if err != nil {
			errs = append(errs, err)
			break
		}
		p.FirewallEnabled = observe(env, on)
		return p, nil
	}
	return p, errors.Join(errs...)
}

// --- boot integrity ---

func collectLinuxBoot(_ context.Context, env *Env) (Partial, error) {
	var p Partial
	var errs []error
	if sb, err := linuxSecureBoot(env); err != nil {
		errs = append(errs, fmt.Errorf("secure boot: %w", err))
	} else {
		p.SecureBoot = observe(env, sb)
	}
	// Kernels without the lockdown LSM have no file: the mode stays unknown.
	if data, err := env.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		if mode, err := parseLockdown(data); err != nil {
			errs = append(errs, err)
		} else {
			p.KernelLockdown = observe(env, mode)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("lockdown: %w", err))
	}
	if data, err := env.ReadFile("/proc/sys/kernel/tainted"); err != nil {
		errs = append(errs, err)
	} else if t, err := parseTainted(data); err != nil {
		errs = append(errs, err)
	} else {
		p.KernelTainted = observe(env, t)
	}
	return p, errors.Join(errs...)
}

// linuxSecureBoot reads the UEFI SecureBoot variable. A machine booted without UEFI has no
// Secure Boot; a UEFI machine whose firmware lacks the variable does not support it.
func linuxSecureBoot(env *Env) (bool, error) {
	efi, err := env.Exists("/sys/firmware/efi")
	if err != nil {
		return false, err
	}
	if !efi {
		return false, nil
	}
	data, err := env.readFileLimit("/sys/firmware/efi/efivars/SecureBoot-"+efiGlobalVariable, 64)
	if errors.Is(err, fs.ErrNotExist) {
		vars, derr := env.ReadDir("/sys/firmware/efi/efivars")
		if derr != nil || len(vars) == 0 {
			return false, errors.New("efivarfs is not mounted at /sys/firmware/efi/efivars")
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return parseEFIBool(data)
}
