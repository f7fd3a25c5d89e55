package installer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// wxs is the WiX source wixl builds: a per-machine install of mdmagent.exe and the enrollment
// file under Program Files, and the hale-agent Windows service (automatic start, started by
// the install, stopped by an upgrade or removal and removed with the product). MajorUpgrade
// makes a newer package of the same group replace the installed one; the state directory in
// ProgramData, the device's identity, stays, unless the package unenrolls on removal: then a
// removal (not an upgrade) first runs mdmagent uninstall --purge as SYSTEM, which deletes it
// (added by buildMSI with msibuild).
var wxs = template.Must(template.New("wxs").Parse(`<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="{{.ProductCode}}" Name="Hale Agent" Language="1033" Version="{{.Version}}" Manufacturer="Hale" UpgradeCode="{{.UpgradeCode}}">
    <Package Id="{{.PackageCode}}" InstallerVersion="500" Compressed="yes" InstallScope="perMachine" Description="Hale compliance agent, enrolling into group {{.Group}}"/>
    <MajorUpgrade DowngradeErrorMessage="A newer Hale Agent is already installed."/>
    <Media Id="1" Cabinet="agent.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="{{.ProgramFiles}}">
        <Directory Id="HaleDir" Name="Hale">
          <Directory Id="INSTALLDIR" Name="Agent">
            <Component Id="AgentService" Guid="{{.ComponentGUID}}" Win64="{{.Win64}}">
              <File Id="mdmagent.exe" Name="mdmagent.exe" Source="{{.Exe}}" KeyPath="yes"/>
              <File Id="enroll.json" Name="enroll.json" Source="{{.EnrollFile}}"/>
              <ServiceInstall Id="HaleAgent" Name="hale-agent" DisplayName="Hale Agent" Description="Hale compliance agent" Type="ownProcess" Start="auto" ErrorControl="normal" Arguments="run --enroll-file &quot;[INSTALLDIR]enroll.json&quot;"/>
              <ServiceControl Id="HaleAgentControl" Name="hale-agent" Start="install" Stop="both" Remove="uninstall" Wait="yes"/>
            </Component>
          </Directory>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Agent" Level="1">
      <ComponentRef Id="AgentService"/>
    </Feature>
  </Product>
</Wix>
`))

// guid derives a stable GUID from parts: the same inputs give the same package, and a new
// version or group a new product code.
func guid(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	b := h.Sum(nil)
	b[6] = b[6]&0x0f | 0x50 // name-based
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("{%X-%X-%X-%X-%X}", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// pinMSI pins the summary information of the MSI at path (pinSummary) and checks with msiinfo
// that it reads back as pinned.
func pinMSI(ctx context.Context, path, packageCode string, mtime time.Time) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := pinSummary(b, packageCode, mtime); err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "msiinfo", "suminfo", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("installer: msiinfo suminfo: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "Revision number (UUID): "+packageCode) {
		return fmt.Errorf("installer: the MSI's pinned summary does not read back:\n%s", out)
	}
	return nil
}

// buildMSI builds the .msi with wixl, signing the executable first and the MSI last when a
// signer is configured.
func buildMSI(ctx context.Context, c *Config, work, out string) error {
	wixl, err := exec.LookPath("wixl")
	if err != nil {
		return fmt.Errorf("installer: building an .msi needs wixl (Debian: apt-get install wixl msitools): %w", err)
	}
	exe := filepath.Join(work, "mdmagent.exe")
	data, err := os.ReadFile(c.Binary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(exe, data, 0o600); err != nil {
		return err
	}
	if c.Sign != nil {
		if err := c.Sign.sign(ctx, exe, "Hale Agent"); err != nil {
			return err
		}
		if data, err = os.ReadFile(exe); err != nil {
			return err
		}
	}
	enrollJSON, err := c.enrollJSON()
	if err != nil {
		return err
	}
	enrollFile := filepath.Join(work, "enroll.json")
	if err := os.WriteFile(enrollFile, enrollJSON, 0o600); err != nil {
		return err
	}
	// wixl's cabinet stamps each file with its modification time, not SOURCE_DATE_EPOCH, so two
	// builds a second apart differed in the cabinet's DOS timestamps until both were pinned.
	for _, f := range []string{exe, enrollFile} {
		if err := os.Chtimes(f, c.MTime, c.MTime); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(append(append(data, 0), enrollJSON...))
	programFiles, win64, arch := "ProgramFiles64Folder", "yes", "x64"
	if c.Arch == "arm64" {
		arch = "arm64"
	}
	packageCode := guid("hale-agent package", fmt.Sprintf("%x", sum), c.Version, strconv.FormatBool(c.UnenrollOnRemove))
	var src bytes.Buffer
	err = wxs.Execute(&src, map[string]any{
		"ProductCode": guid("hale-agent product", c.Group, c.Version, c.Arch), "UpgradeCode": guid("hale-agent upgrade", c.Group, c.Arch),
		"PackageCode":   packageCode,
		"ComponentGUID": guid("hale-agent component", c.Arch),
		"Version":       c.Version, "Group": c.Group, "ProgramFiles": programFiles, "Win64": win64,
		"Exe": "mdmagent.exe", "EnrollFile": "enroll.json", "Unenroll": c.UnenrollOnRemove,
	})
	if err != nil {
		return err
	}
	wxsFile := filepath.Join(work, "agent.wxs")
	if err := os.WriteFile(wxsFile, src.Bytes(), 0o600); err != nil {
		return err
	}
	msi := filepath.Join(work, "agent.msi")
	cmd := exec.CommandContext(ctx, wixl, "-a", arch, "-o", msi, wxsFile)
	cmd.Dir = work // wixl takes file sources relative to it
	// wixl stamps the summary information with SOURCE_DATE_EPOCH when set (pinMSI still pins it).
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(c.MTime.Unix(), 10))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("installer: wixl: %v: %s", err, b)
	}
	if c.UnenrollOnRemove {
		// wixl writes the string pool of an MSI with custom actions in a different order on
		// every run; msibuild adds the same rows afterwards reproducibly. A removal, not an
		// upgrade, runs mdmagent uninstall --purge as SYSTEM (type 3154: an installed exe,
		// deferred, no impersonation, its exit status ignored) after InstallValidate and before
		// StopServices, while the executable is still installed.
		cmd := exec.CommandContext(ctx, "msibuild", msi,
			"-q", "INSERT INTO `CustomAction` (`Action`, `Type`, `Source`, `Target`) VALUES ('Unenroll', 3154, 'mdmagent.exe', 'uninstall --purge')",
			"-q", "INSERT INTO `InstallExecuteSequence` (`Action`, `Condition`, `Sequence`) VALUES ('Unenroll', 'REMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE', 1850)")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("installer: msibuild: %v: %s", err, b)
		}
	}
	if err := pinMSI(ctx, msi, packageCode, c.MTime); err != nil {
		return err
	}
	if c.Sign != nil {
		if err := c.Sign.sign(ctx, msi, "Hale Agent installer"); err != nil {
			return err
		}
	}
	return writeAtomic(out, func(f *os.File) error {
		b, err := os.ReadFile(msi)
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		return err
	})
}
