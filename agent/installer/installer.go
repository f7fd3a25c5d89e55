// Package installer builds the installers IT pushes to a fleet (mdmctl package agent): a .deb
// and an .rpm (through github.com/goreleaser/nfpm), an .msi (through wixl from msitools) and,
// since no maintained tool builds a macOS flat .pkg on Linux, a macOS tarball with the same
// install and uninstall steps. Each installs mdmagent and an enrollment file (the server, a
// reusable enrollment credential and the pinned SHA-256 of the server's root CA); the agent
// service enrolls with it on first start, so every device gets its own identity, and an upgrade
// keeps the identity it has.
//
// Builds are reproducible: the same Config gives the same bytes, every timestamp being
// Config.MTime and entries sorted, except Authenticode signatures, which carry their own time.
package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/halemdm/hale/agent"
)

// The formats Build makes.
const (
	FormatDeb = "deb"
	FormatRPM = "rpm"
	FormatMSI = "msi"
	FormatPkg = "pkg"
)

// Formats are the formats Build makes, in the order the CLI lists them.
var Formats = []string{FormatDeb, FormatRPM, FormatMSI, FormatPkg}

// DefaultMTime is the timestamp of every file in an installer when Config.MTime is zero.
var DefaultMTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Where the installed files go.
const (
	LinuxBinary     = "/usr/bin/mdmagent"
	LinuxEnrollFile = "/etc/hale-agent/enroll.json"
	MacBinary       = "/usr/local/bin/mdmagent"
	MacEnrollFile   = "/Library/Application Support/Hale Agent/enroll.json"
)

// Config is one installer.
type Config struct {
	// Format is deb, rpm, msi or pkg.
	Format string
	// Binary is the mdmagent executable for the target OS and Arch.
	Binary string
	// Version is the package version: a semantic version ("1.4.0"; a leading v is dropped).
	Version string
	// Arch is amd64 or arm64.
	Arch string
	// Enroll is what the agent enrolls with on first start.
	Enroll agent.EnrollFile
	// Group names the devices' group, for the package's description and file name.
	Group string
	// UnenrollOnRemove makes removal also delete the device's key and enrollment (mdmagent
	// uninstall --purge); without it the state stays and a reinstall keeps the identity.
	// Either way the server sees the device go quiet.
	UnenrollOnRemove bool
	// MTime is every file's timestamp; zero means DefaultMTime.
	MTime time.Time
	// Sign, when set, signs the Windows executable and the MSI with Authenticode.
	Sign *Signer
}

// Name returns the installer's file name, such as hale-agent_1.4.0_ward-3_amd64.deb.
func (c *Config) Name() string {
	v := strings.TrimPrefix(c.Version, "v")
	switch c.Format {
	case FormatRPM:
		return fmt.Sprintf("hale-agent-%s-%s.%s.rpm", v, c.Group, rpmArch(c.Arch))
	case FormatMSI:
		return fmt.Sprintf("hale-agent-%s-%s-%s.msi", v, c.Group, c.Arch)
	case FormatPkg:
		return fmt.Sprintf("hale-agent-%s-%s-macos-%s.tar.gz", v, c.Group, c.Arch)
	}
	return fmt.Sprintf("hale-agent_%s_%s_%s.deb", v, c.Group, c.Arch)
}

var (
	versionRE = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+$`)
	groupRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// check validates c and fills its defaults.
func (c *Config) check() error {
	switch {
	case c.Format != FormatDeb && c.Format != FormatRPM && c.Format != FormatMSI && c.Format != FormatPkg:
		return fmt.Errorf("installer: format %q is not one of %v", c.Format, Formats)
	case !versionRE.MatchString(c.Version):
		return fmt.Errorf("installer: version %q is not a release version such as 1.4.0", c.Version)
	case c.Arch != "amd64" && c.Arch != "arm64":
		return fmt.Errorf("installer: arch %q is not amd64 or arm64", c.Arch)
	case !groupRE.MatchString(c.Group):
		return fmt.Errorf("installer: group %q must be letters, digits, dots, dashes and underscores (it names the file)", c.Group)
	case c.Binary == "":
		return errors.New("installer: the mdmagent binary is required")
	}
	c.Version = strings.TrimPrefix(c.Version, "v")
	if c.MTime.IsZero() {
		c.MTime = DefaultMTime
	}
	c.MTime = c.MTime.UTC()
	if _, err := os.Stat(c.Binary); err != nil {
		return fmt.Errorf("installer: the mdmagent binary: %w", err)
	}
	b, err := c.enrollJSON()
	if err != nil {
		return err
	}
	if _, err := agent.ParseEnrollFile(b); err != nil {
		return fmt.Errorf("installer: %w", err)
	}
	return nil
}

// enrollJSON is the enrollment file's content.
func (c *Config) enrollJSON() ([]byte, error) {
	b, err := json.MarshalIndent(c.Enroll, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Build writes the installer c describes into dir and returns its path.
func Build(ctx context.Context, c Config, dir string) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	out := filepath.Join(dir, c.Name())
	work, err := os.MkdirTemp("", "hale-installer")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	switch c.Format {
	case FormatDeb, FormatRPM:
		err = buildLinux(&c, work, out)
	case FormatMSI:
		err = buildMSI(ctx, &c, work, out)
	case FormatPkg:
		err = buildMac(&c, out)
	}
	if err != nil {
		os.Remove(out)
		return "", err
	}
	return out, nil
}

// writeAtomic writes data to path through a temporary file, so that a failed build leaves no
// truncated installer behind.
func writeAtomic(path string, write func(f *os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hale-installer-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
