package service

import (
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// checkValue refuses values that would break out of a service file: newlines end a unit line,
// and "{{" would be read as a template action by the service library.
func checkValue(what, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") || strings.Contains(v, "{{") {
		return fmt.Errorf("service: %s %q contains a newline, NUL or \"{{\"", what, v)
	}
	return nil
}

func (c *Config) check() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "/\\ ") {
		return errors.New("service: the name must be non-empty without spaces or slashes")
	}
	if !filepath.IsAbs(c.Executable) {
		return fmt.Errorf("service: the executable %q must be an absolute path", c.Executable)
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("service: the state directory %q must be an absolute path", c.StateDir)
	}
	for _, r := range c.WipeRoots {
		if !filepath.IsAbs(r) {
			return fmt.Errorf("service: the wipe root %q must be an absolute path", r)
		}
	}
	for _, v := range append([]string{c.Name, c.Description, c.Executable, c.StateDir}, c.runArgs()...) {
		if err := checkValue("value", v); err != nil {
			return err
		}
	}
	return nil
}

// systemdQuote quotes one ExecStart word: systemd expands "%" specifiers and "$" variables,
// so both are doubled, and backslashes and quotes are escaped inside double quotes.
func systemdQuote(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$").Replace(s)
	return `"` + s + `"`
}

// SystemdUnit renders the hardened systemd unit of the agent.
//
// Hardening choices: the agent runs as root (it reads /etc/shadow, LUKS and firewall state, and
// removes managed data of every user), so the unit takes away what root does not need. The whole
// file system is read-only (ProtectSystem=strict) except the state directory and the wipe roots
// (ReadWritePaths), which a selective wipe must be able to write.
//
// ProtectHome=read-only is used when no wipe root lies under /home, /root or /run/user. When one
// does (the Linux default wipes under /home), it cannot be combined with ReadWritePaths=/home:
// systemd keeps the more restrictive of two mounts on the same path, so /home would stay
// read-only and the wipe would fail. ProtectHome is then left off: ProtectSystem=strict still
// keeps /root and /run/user read-only, and only the named wipe roots are writable.
//
// NoNewPrivileges is compatible: locking goes through loginctl over D-Bus, which needs no setuid
// helper. Exit status 78 (not enrolled, or wiped) is not restarted.
func SystemdUnit(c Config) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("[Unit]")
	w("Description=%s", c.description())
	w("Documentation=https://hale.dev/docs/agent")
	w("After=network-online.target")
	w("Wants=network-online.target")
	w("StartLimitIntervalSec=300")
	w("StartLimitBurst=20")
	w("")
	w("[Service]")
	w("Type=simple")
	words := []string{systemdQuote(c.Executable)}
	for _, a := range c.runArgs() {
		words = append(words, systemdQuote(a))
	}
	w("ExecStart=%s", strings.Join(words, " "))
	w("Restart=on-failure")
	w("RestartSec=5s")
	w("RestartPreventExitStatus=%d", ExitNotEnrolled)
	w("TimeoutStopSec=20s")
	// Writable state: StateDirectory creates /var/lib/NAME 0700 when the state dir is there.
	if rel, ok := strings.CutPrefix(c.StateDir, "/var/lib/"); ok && rel != "" && !strings.Contains(rel, "/") {
		w("StateDirectory=%s", rel)
		w("StateDirectoryMode=0700")
	}
	w("ReadWritePaths=%s", systemdPath(c.StateDir))
	// The local endpoint's socket directory (agent/localapi.DefaultAddress): writable under
	// ProtectSystem=strict, 0755 so every local user can reach the socket.
	w("RuntimeDirectory=hale-agent")
	w("RuntimeDirectoryMode=0755")
	homeWipe := false
	for _, r := range c.WipeRoots {
		// "-": a root that does not exist on this machine is skipped, not an error.
		w("ReadWritePaths=-%s", systemdPath(r))
		for _, h := range []string{"/home", "/root", "/run/user"} {
			homeWipe = homeWipe || r == h || strings.HasPrefix(r, h+"/") || strings.HasPrefix(h, strings.TrimSuffix(r, "/")+"/")
		}
	}
	w("UMask=0077")
	w("NoNewPrivileges=yes")
	w("ProtectSystem=strict")
	if homeWipe {
		w("# ProtectHome=read-only would override ReadWritePaths on /home (the more restrictive")
		w("# mount wins) and break selective wipe; ProtectSystem=strict keeps the rest read-only.")
		w("ProtectHome=no")
	} else {
		w("ProtectHome=read-only")
	}
	w("PrivateTmp=yes")
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectKernelLogs=yes")
	w("ProtectControlGroups=yes")
	w("ProtectClock=yes")
	w("ProtectHostname=yes")
	w("RestrictSUIDSGID=yes")
	w("RestrictRealtime=yes")
	w("RestrictNamespaces=yes")
	w("LockPersonality=yes")
	w("MemoryDenyWriteExecute=yes")
	w("SystemCallArchitectures=native")
	w("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK")
	w("KeyringMode=private")
	// Collectors read block devices (LUKS) and the TPM, so devices stay visible.
	w("PrivateDevices=no")
	w("MemoryMax=128M")
	w("TasksMax=64")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String(), nil
}

// systemdPath escapes a path for a path-list setting (space separated; % specifiers).
func systemdPath(p string) string {
	return strings.NewReplacer("%", "%%", " ", `\x20`).Replace(p)
}

// LaunchdPlist renders the launchd property list of the agent (/Library/LaunchDaemons). The
// daemon starts at boot, is restarted after a crash (KeepAlive SuccessfulExit=false) but not
// after a clean exit (wiped), and creates files 0600.
func LaunchdPlist(c Config) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
`)
	str := func(k, v string) {
		fmt.Fprintf(&b, "\t<key>%s</key>\n\t<string>%s</string>\n", xmlEscape(k), xmlEscape(v))
	}
	str("Label", c.Name)
	b.WriteString("\t<key>ProgramArguments</key>\n\t<array>\n")
	for _, a := range append([]string{c.Executable}, c.runArgs()...) {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlEscape(a))
	}
	b.WriteString("\t</array>\n")
	b.WriteString("\t<key>RunAtLoad</key>\n\t<true/>\n")
	b.WriteString("\t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	b.WriteString("\t<key>ThrottleInterval</key>\n\t<integer>10</integer>\n")
	b.WriteString("\t<key>Umask</key>\n\t<integer>63</integer>\n")
	str("ProcessType", "Background")
	str("StandardErrorPath", "/Library/Logs/"+c.Name+".log")
	str("StandardOutPath", "/Library/Logs/"+c.Name+".log")
	b.WriteString("</dict>\n</plist>\n")
	return b.String(), nil
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
