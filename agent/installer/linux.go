package installer

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// postInstall installs the service for this version and starts it. mdmagent install writes a
// systemd unit, or the SysV init script where there is no systemd (as kardianos/service
// chooses), enabled at boot. On an upgrade the old unit is removed first (stopping the old
// agent); the state directory, and with it the device's identity, stays. The service enrolls
// on its first start with the enrollment file, and not again while an enrollment is kept.
// $1 is configure (dpkg) or 1 / 2 (rpm: install / upgrade).
const postInstall = `#!/bin/sh
set -e
case "$1" in
configure|1|2) ;;
*) exit 0 ;;
esac
chmod 0600 ` + LinuxEnrollFile + `
` + LinuxBinary + ` uninstall >/dev/null 2>&1 || true
` + LinuxBinary + ` install --enroll-file ` + LinuxEnrollFile + `
` + LinuxBinary + ` start
`

// preRemove stops and removes the service on removal (dpkg: remove; rpm: 0), not on an upgrade,
// whose new postinst replaces it. %s is --purge when removal also unenrolls.
const preRemove = `#!/bin/sh
set -e
case "$1" in
remove|purge|0) ` + LinuxBinary + ` uninstall%s || true ;;
esac
exit 0
`

// buildLinux builds a .deb or an .rpm with nfpm.
func buildLinux(c *Config, work, out string) error {
	enrollJSON, err := c.enrollJSON()
	if err != nil {
		return err
	}
	purge := ""
	if c.UnenrollOnRemove {
		purge = " --purge"
	}
	srcs := map[string][]byte{
		"enroll.json": enrollJSON,
		"postinst":    []byte(postInstall),
		"prerm":       fmt.Appendf(nil, preRemove, purge),
	}
	for name, data := range srcs {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o600); err != nil {
			return err
		}
	}
	fi := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: c.MTime}
	}
	info := &nfpm.Info{
		Name:        "hale-agent",
		Arch:        c.Arch,
		Platform:    "linux",
		Version:     c.Version,
		Section:     "admin",
		Priority:    "optional",
		Maintainer:  "Hale <it@localhost>",
		Description: "Hale compliance agent, enrolling into group " + c.Group,
		Homepage:    "https://github.com/halemdm/hale",
		License:     "Apache-2.0",
		MTime:       c.MTime,
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: c.Binary, Destination: LinuxBinary, FileInfo: fi(0o755)},
				{Source: filepath.Join(work, "enroll.json"), Destination: LinuxEnrollFile, FileInfo: fi(0o600)},
			},
			Scripts: nfpm.Scripts{PostInstall: filepath.Join(work, "postinst"), PreRemove: filepath.Join(work, "prerm")},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, c.Format); err != nil {
		return fmt.Errorf("installer: %w", err)
	}
	var pkger nfpm.Packager = deb.Default
	if c.Format == FormatRPM {
		pkger = rpm.DefaultRPM
	}
	return writeAtomic(out, func(f *os.File) error { return pkger.Package(info, f) })
}

// rpmArch is the RPM name of a Go architecture.
func rpmArch(arch string) string {
	if arch == "arm64" {
		return "aarch64"
	}
	return "x86_64"
}
