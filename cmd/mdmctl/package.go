package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/agent"
	"github.com/halemdm/hale/agent/installer"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/rootpin"
)

// formatOS is the agent OS each installer format is for.
var formatOS = map[string]string{installer.FormatDeb: "linux", installer.FormatRPM: "linux", installer.FormatMSI: "windows", installer.FormatPkg: "macos"}

func (a *app) packageCommand() *cobra.Command {
	cmd := group("package", "Build preconfigured installers")
	var (
		c                                   installer.Config
		out, credential, devicesURL, ttl    string
		fingerprint, signCert, signKey, tsa string
		maxDevices                          int
		mtime                               int64
	)
	agentCmd := &cobra.Command{
		Use:   "agent --format deb|rpm|msi|pkg --group G --binary MDMAGENT --version 1.4.0 [--out DIR]",
		Short: "Build an mdmagent installer that enrolls into a group on first start",
		Long: `agent builds an installer of mdmagent for software-deployment tools (Intune, SCCM, Jamf,
Ansible): it installs the agent as a service, which enrolls on its first start with a reusable
enrollment credential of --group (created here, scoped to the installer's OS, --max-devices and
--ttl, unless --credential gives one), pinning the server's root CA by its SHA-256, and starts it.
Each device still gets its own identity; an upgrade keeps it. Removal stops and removes the
service; --unenroll-on-remove also deletes the device's key and enrollment.

deb and rpm (systemd unit, or the SysV script where there is no systemd) are built with nfpm, msi
(a per-machine Windows service) with wixl from msitools, and pkg, for want of a tool that builds a
macOS flat package outside macOS, is a tarball with install.sh and uninstall.sh. --sign-cert and
--sign-key sign the Windows executable and the MSI with Authenticode (osslsigncode). The same
inputs (with the same --credential) give the same bytes, signatures aside.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			osName, ok := formatOS[c.Format]
			if !ok {
				return usagef("--format must be one of %s", strings.Join(installer.Formats, ", "))
			}
			if (signCert == "") != (signKey == "") {
				return usagef("--sign-cert and --sign-key go together")
			}
			if signCert != "" {
				if c.Format != installer.FormatMSI {
					return usagef("--sign-cert signs Windows installers (--format msi)")
				}
				c.Sign = &installer.Signer{CertFile: signCert, KeyFile: signKey, TimestampURL: tsa}
			}
			c.MTime = time.Unix(mtime, 0)
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if fingerprint == "" {
				// The root CA as this (verified, authenticated) connection sees it.
				var raw []byte
				if raw, err = fetchRootPEM(ctx, cl); err != nil {
					return err
				}
				if fingerprint, err = pemFingerprint(raw); err != nil {
					return err
				}
			} else if fingerprint, err = rootpin.ParseFingerprint(fingerprint); err != nil {
				return usagef("--ca-fingerprint: %v", err)
			}
			if devicesURL == "" {
				devicesURL = cl.base
			}
			enrollmentID := ""
			if credential == "" {
				var e api.NewEnrollment
				req := api.EnrollmentRequest{Group: c.Group, Platform: "agent", Reusable: true, OS: osName, MaxDevices: maxDevices, TTL: ttl}
				if err := cl.do(ctx, http.MethodPost, "/api/v1/enrollments", req, &e); err != nil {
					return err
				}
				credential, enrollmentID = e.Token, e.ID
			}
			c.Enroll = agent.EnrollFile{ServerURL: devicesURL, Token: credential, CAFingerprint: fingerprint}
			path, err := installer.Build(ctx, c, out)
			if err != nil {
				if enrollmentID != "" {
					// Nothing will use the credential: revoke it rather than leave it standing.
					_ = cl.do(ctx, http.MethodDelete, pathf("/api/v1/enrollments/%s", enrollmentID), nil, nil)
				}
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]string{"path": path, "enrollment": enrollmentID, "ca_fingerprint": fingerprint, "os": osName})
			}
			kv := []string{"installer", path, "os", osName, "group", c.Group, "server", devicesURL, "ca sha256", fingerprint}
			if enrollmentID != "" {
				kv = append(kv, "enrollment", enrollmentID+fmt.Sprintf(" (reusable, up to %d devices; mdmctl enroll revoke %s)", maxDevices, enrollmentID))
			}
			return fields(a.stdout, kv...)
		}),
	}
	f := agentCmd.Flags()
	f.StringVar(&c.Format, "format", "", "deb, rpm, msi or pkg")
	f.StringVar(&c.Group, "group", "", "the group the devices enroll into")
	f.StringVar(&c.Binary, "binary", "", "the mdmagent executable for the target OS and architecture")
	f.StringVar(&c.Version, "version", "", "the package version, the agent's release (1.4.0)")
	f.StringVar(&c.Arch, "arch", "amd64", "amd64 or arm64")
	f.StringVar(&out, "out", ".", "directory to write the installer to")
	f.StringVar(&credential, "credential", "", "an existing reusable enrollment credential (default: create one)")
	f.IntVar(&maxDevices, "max-devices", 1000, "devices the created credential may enroll")
	f.StringVar(&ttl, "ttl", "90d", "how long the created credential is valid (up to 365d)")
	f.StringVar(&devicesURL, "devices-url", "", "the server URL as devices reach it (default: --server)")
	f.StringVar(&fingerprint, "ca-fingerprint", "", "SHA-256 of the server's root CA to pin (default: the root this connection fetches)")
	f.BoolVar(&c.UnenrollOnRemove, "unenroll-on-remove", false, "removing the package also deletes the device's key and enrollment")
	f.StringVar(&signCert, "sign-cert", "", "msi: Authenticode code-signing certificate (PEM, with its chain)")
	f.StringVar(&signKey, "sign-key", "", "msi: the certificate's private key (PEM)")
	f.StringVar(&tsa, "timestamp-url", "", "msi: RFC 3161 time-stamping service for the signatures")
	f.Int64Var(&mtime, "mtime", installer.DefaultMTime.Unix(), "timestamp of the packaged files (Unix seconds), for reproducible builds")
	for _, n := range []string{"format", "group", "binary", "version"} {
		_ = agentCmd.MarkFlagRequired(n)
	}
	cmd.AddCommand(agentCmd)
	return cmd
}

// pemFingerprint is the hex SHA-256 of the first certificate in raw.
func pemFingerprint(raw []byte) (string, error) {
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		return "", fmt.Errorf("the server's /ca/root.pem is not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return "", fmt.Errorf("the server's root CA does not parse: %w", err)
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:]), nil
}
