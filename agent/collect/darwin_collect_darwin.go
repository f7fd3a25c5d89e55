package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultCollectors returns the collectors for the running OS.
func DefaultCollectors() []Collector { return MacCollectors() }

// Absolute paths of the macOS tools the collectors run.
const (
	toolSwVers         = "/usr/bin/sw_vers"
	toolFdesetup       = "/usr/bin/fdesetup"
	toolSocketfilterfw = "/usr/libexec/ApplicationFirewall/socketfilterfw"
	toolCsrutil        = "/usr/bin/csrutil"
	toolSpctl          = "/usr/sbin/spctl"
	toolStat           = "/usr/bin/stat"
	toolLaunchctl      = "/bin/launchctl"
	toolSudo           = "/usr/bin/sudo"
	toolDefaults       = "/usr/bin/defaults"
	toolSysadminctl    = "/usr/sbin/sysadminctl"
)

// MacCollectors returns the collectors of a macOS machine.
func MacCollectors() []Collector {
	return []Collector{
		toolCollector("macos-os", toolSwVers, nil, func(env *Env, out Output, p *Partial) error {
			info, err := parseSwVers(out.Stdout)
			if err == nil {
				p.OS = observe(env, info)
			}
			return err
		}),
		toolCollector("macos-filevault", toolFdesetup, []string{"status"}, func(env *Env, out Output, p *Partial) error {
			on, err := parseFdesetupStatus(out.Stdout)
			if err == nil {
				p.DiskEncrypted = observe(env, on)
			}
			return err
		}),
		toolCollector("macos-firewall", toolSocketfilterfw, []string{"--getglobalstate"}, func(env *Env, out Output, p *Partial) error {
			on, err := parseSocketfilterfw(out.Stdout)
			if err == nil {
				p.FirewallEnabled = observe(env, on)
			}
			return err
		}),
		toolCollector("macos-sip", toolCsrutil, []string{"status"}, func(env *Env, out Output, p *Partial) error {
			on, err := parseCsrutilStatus(out.Stdout)
			if err == nil {
				p.SIPEnabled = observe(env, on)
			}
			return err
		}),
		toolCollector("macos-gatekeeper", toolSpctl, []string{"--status"}, func(env *Env, out Output, p *Partial) error {
			on, err := parseSpctlStatus(out.Stdout)
			if err == nil {
				p.GatekeeperActive = observe(env, on)
			}
			return err
		}),
		collectorFunc{name: "macos-screenlock", fn: collectMacScreenLock},
		collectorFunc{name: "agent-integrity", fn: collectAgentIntegrity},
	}
}

// toolCollector runs one tool and hands its output to parse. Some tools (spctl) answer through a
// non-zero exit status as well as their output, so an exit status alone is not a failure.
func toolCollector(name, tool string, args []string, parse func(*Env, Output, *Partial) error) Collector {
	return collectorFunc{name: name, fn: func(ctx context.Context, env *Env) (Partial, error) {
		var p Partial
		out, err := env.Runner.Run(ctx, tool, args...)
		var ee *ExitError
		if err != nil && !errors.As(err, &ee) {
			return p, err
		}
		if perr := parse(env, out, &p); perr != nil {
			return p, errors.Join(perr, err)
		}
		return p, nil
	}}
}

// collectMacScreenLock reads the console user's screen saver settings: managed preferences
// (installed by a profile) first, then the user's own ByHost preferences and sysadminctl, run
// as that user. Nobody at the console (login window) leaves the claims unknown.
func collectMacScreenLock(ctx context.Context, env *Env) (Partial, error) {
	var p Partial
	fi, err := env.Stat("/dev/console")
	if err != nil {
		return p, err
	}
	uid, ok := fileOwner(fi)
	if !ok || uid == 0 {
		return p, nil
	}
	out, err := env.Runner.Run(ctx, toolStat, "-f", "%Su", "/dev/console")
	if err != nil {
		return p, err
	}
	user := strings.TrimSpace(string(out.Stdout))
	if user == "" || user[0] == '-' || strings.ContainsAny(user, " /\n") {
		return p, fmt.Errorf("console user %q is not a user name", truncate(user))
	}
	var managed, own screensaverPrefs
	for _, f := range []string{"/Library/Managed Preferences/com.apple.screensaver.plist",
		"/Library/Managed Preferences/" + user + "/com.apple.screensaver.plist"} {
		data, err := env.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return p, err
		}
		m, err := parseScreensaverPlist(data)
		if err != nil {
			return p, fmt.Errorf("%s: %w", f, err)
		}
		overlayPrefs(&managed, m)
	}
	asUser := []string{"asuser", strconv.Itoa(int(uid)), toolSudo, "-u", user}
	var errs []error
	if out, err := env.Runner.Run(ctx, toolLaunchctl, slices.Concat(asUser, []string{toolDefaults, "-currentHost", "export", "com.apple.screensaver", "-"})...); err == nil {
		if own, err = parseScreensaverPlist(out.Stdout); err != nil {
			errs = append(errs, err)
		}
	} else {
		errs = append(errs, err)
	}
	var on bool
	var delay time.Duration
	var sysErr error
	out, err = env.Runner.Run(ctx, toolLaunchctl, slices.Concat(asUser, []string{toolSysadminctl, "-screenLock", "status"})...)
	if err == nil {
		on, delay, sysErr = parseSysadminctlScreenLock(out.Stderr)
	} else {
		sysErr = err
	}
	sl, err := macScreenLock(managed, own, on, delay, sysErr == nil)
	if err != nil {
		return p, errors.Join(append(errs, sysErr, err)...)
	}
	sl.apply(env, &p)
	return p, nil
}
