package installer

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"os"
)

// A macOS flat package (.pkg) is a xar archive holding a BOM, a cpio payload and scripts.
// Debian ships no maintained tool that writes one (no xar, no mkbom/bomutils; pkgbuild and
// productbuild exist only on macOS), and hand-writing the BOM format is not the kind of code to
// own here. So the pkg format is the nearest installable form: a reproducible tarball with the
// same files and the same install and uninstall steps as the Linux packages, which Jamf or a
// script runs as root: sudo ./install.sh (the launchd daemon, enrolling on first start), and
// sudo ./uninstall.sh to stop and remove it. Wrapping it in a signed .pkg is one pkgbuild call
// on a Mac (pkgbuild --root payload --scripts scripts).

// macInstall copies the agent and the enrollment file in place, installs the launchd daemon
// (mdmagent install writes /Library/LaunchDaemons/hale-agent.plist) and starts it. Run again
// with a newer tarball it upgrades: the daemon is replaced and the state directory (the
// device's identity) stays.
const macInstall = `#!/bin/sh
# Hale agent for macOS: run as root from this directory.
set -e
cd "$(dirname "$0")"
mkdir -p /usr/local/bin "/Library/Application Support/Hale Agent"
` + MacBinary + ` uninstall >/dev/null 2>&1 || true
install -m 0755 mdmagent ` + MacBinary + `
install -m 0600 enroll.json "` + MacEnrollFile + `"
` + MacBinary + ` install --enroll-file "` + MacEnrollFile + `"
` + MacBinary + ` start
`

// macUninstall stops and removes the daemon (and %s: the device's enrollment too when the
// package unenrolls on removal).
const macUninstall = `#!/bin/sh
# Hale agent for macOS: run as root.
set -e
` + MacBinary + ` uninstall%s || true
rm -f ` + MacBinary + ` "` + MacEnrollFile + `"
`

// buildMac writes the macOS tarball: entries in a fixed order with fixed owners and times.
func buildMac(c *Config, out string) error {
	bin, err := os.ReadFile(c.Binary)
	if err != nil {
		return err
	}
	enrollJSON, err := c.enrollJSON()
	if err != nil {
		return err
	}
	purge := ""
	if c.UnenrollOnRemove {
		purge = " --purge"
	}
	dir := "hale-agent/"
	entries := []struct {
		name string
		mode int64
		data []byte
	}{
		{dir + "enroll.json", 0o600, enrollJSON},
		{dir + "install.sh", 0o755, []byte(macInstall)},
		{dir + "mdmagent", 0o755, bin},
		{dir + "uninstall.sh", 0o755, fmt.Appendf(nil, macUninstall, purge)},
	}
	return writeAtomic(out, func(f *os.File) error {
		zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
		if err != nil {
			return err
		}
		zw.ModTime = c.MTime
		tw := tar.NewWriter(zw)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: c.MTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		for _, e := range entries {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.data)),
				ModTime: c.MTime, Format: tar.FormatPAX}); err != nil {
				return err
			}
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
}
