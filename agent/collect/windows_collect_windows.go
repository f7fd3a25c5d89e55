package collect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// DefaultCollectors returns the collectors for the running OS.
func DefaultCollectors() []Collector { return WindowsCollectors() }

// systemRoot is where Windows lives; tools are run from System32 by absolute path.
func systemRoot() string {
	if r := os.Getenv("SystemRoot"); filepath.IsAbs(r) {
		return r
	}
	return `C:\Windows`
}

func systemDrive() string {
	if d := os.Getenv("SystemDrive"); len(d) == 2 && d[1] == ':' {
		return d
	}
	return "C:"
}

func sys32(name string) string { return filepath.Join(systemRoot(), "System32", name) }

// powershell runs a script without profiles, so a user's profile cannot change the answer.
func powershell(ctx context.Context, env *Env, script string) (Output, error) {
	return env.Runner.Run(ctx, filepath.Join(systemRoot(), `System32\WindowsPowerShell\v1.0\powershell.exe`),
		"-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command", script)
}

// WindowsCollectors returns the collectors of a Windows machine. The agent's own files are not
// checked for tampering: that needs ACLs, which this cgo-free agent does not read yet.
func WindowsCollectors() []Collector {
	return []Collector{
		collectorFunc{name: "windows-os", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			out, err := env.Runner.Run(ctx, sys32("reg.exe"), "query", `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion`)
			if err != nil {
				return p, err
			}
			vals, err := parseRegQuery(out.Stdout)
			if err != nil {
				return p, err
			}
			info, err := windowsOSInfo(vals)
			if err != nil {
				return p, err
			}
			p.OS = observe(env, info)
			return p, nil
		}},
		collectorFunc{name: "windows-bitlocker", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			out, err := powershell(ctx, env, `Get-CimInstance -Namespace root/cimv2/Security/MicrosoftVolumeEncryption -ClassName Win32_EncryptableVolume | Select-Object DriveLetter,ProtectionStatus | ConvertTo-Json -Compress`)
			if err != nil {
				return p, err
			}
			on, err := parseBitLockerJSON(out.Stdout, systemDrive())
			if err != nil {
				return p, err
			}
			p.DiskEncrypted = observe(env, on)
			return p, nil
		}},
		collectorFunc{name: "windows-screenlock", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			out, err := env.Runner.Run(ctx, sys32("reg.exe"), "query", `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`, "/v", "InactivityTimeoutSecs")
			var ee *ExitError
			if errors.As(err, &ee) {
				return p, errors.New("machine inactivity limit (InactivityTimeoutSecs) is not configured; screen lock unknown")
			}
			if err != nil {
				return p, err
			}
			vals, err := parseRegQuery(out.Stdout)
			if err != nil {
				return p, err
			}
			sl, err := inactivityLock(vals)
			if err != nil {
				return p, err
			}
			sl.apply(env, &p)
			return p, nil
		}},
		collectorFunc{name: "windows-firewall", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			out, err := powershell(ctx, env, `Get-NetFirewallProfile | Select-Object Name,Enabled | ConvertTo-Json -Compress`)
			if err != nil {
				return p, err
			}
			on, err := parseFirewallProfilesJSON(out.Stdout)
			if err != nil {
				return p, err
			}
			p.FirewallEnabled = observe(env, on)
			return p, nil
		}},
		collectorFunc{name: "windows-password", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			// secedit exports the local security policy (needs the agent's SYSTEM rights) to a
			// file, which the script reads and removes; the keys are the same in every language.
			out, err := powershell(ctx, env, `$f = [IO.Path]::GetTempFileName(); `+
				`secedit.exe /export /cfg $f /areas SECURITYPOLICY /quiet | Out-Null; `+
				`$policy = (Get-Content -Raw $f); Remove-Item $f; `+
				`@{users = @(Get-LocalUser | Where-Object Enabled | Select-Object Name,PasswordRequired); policy = $policy} | ConvertTo-Json -Compress -Depth 3`)
			if err != nil {
				return p, err
			}
			present, rules, err := parseWindowsPassword(out.Stdout)
			if err != nil {
				return p, err
			}
			if present != nil {
				p.PasscodePresent = observe(env, *present)
			}
			p.PasswordRules = observe(env, rules)
			return p, nil
		}},
		collectorFunc{name: "windows-boot", fn: func(ctx context.Context, env *Env) (Partial, error) {
			var p Partial
			var errs []error
			if out, err := env.Runner.Run(ctx, sys32("bcdedit.exe"), "/enum", "{current}"); err != nil {
				errs = append(errs, err)
			} else if weak, err := parseBcdedit(out.Stdout); err != nil {
				errs = append(errs, err)
			} else {
				p.Jailbroken = observe(env, weak)
			}
			if out, err := powershell(ctx, env, `Confirm-SecureBootUEFI`); err != nil {
				errs = append(errs, err)
			} else if on, err := parseConfirmSecureBoot(out.Stdout); err != nil {
				errs = append(errs, err)
			} else {
				p.SecureBoot = observe(env, on)
			}
			return p, errors.Join(errs...)
		}},
	}
}
