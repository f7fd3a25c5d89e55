package collect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
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
