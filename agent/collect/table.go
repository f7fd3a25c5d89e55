package collect

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/halemdm/hale/policies"
)

// Table writes p as a table a person can read (`mdmagent posture -o table`): one row per claim,
// with its value, source and observation time; unknown claims say so.
func Table(w io.Writer, p *policies.Posture) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PLATFORM\t%s\t\t\n", p.Platform)
	fmt.Fprintf(tw, "COLLECTED\t%s\t\t\n", formatTime(p.ReportedAt))
	fmt.Fprintln(tw, "CLAIM\tVALUE\tSOURCE\tOBSERVED")
	row(tw, "os", p.OS, formatOS)
	row(tw, "supervised", p.Supervised, yesNo)
	row(tw, "disk encrypted", p.DiskEncrypted, yesNo)
	row(tw, "swap encrypted", p.SwapEncrypted, yesNo)
	row(tw, "password present", p.PasscodePresent, yesNo)
	row(tw, "password compliant", p.PasscodeCompliant, yesNo)
	row(tw, "screen lock", p.ScreenLockEnabled, yesNo)
	row(tw, "screen lock after", p.ScreenLockTimeout, func(d policies.Duration) string { return time.Duration(d).String() })
	row(tw, "profiles", p.InstalledProfiles, func(ps []policies.InstalledProfile) string { return fmt.Sprint(len(ps)) })
	row(tw, "jailbroken/rooted", p.Jailbroken, yesNo)
	row(tw, "SIP", p.SIPEnabled, yesNo)
	row(tw, "secure boot", p.SecureBoot, yesNo)
	row(tw, "agent tampered", p.AgentTampered, yesNo)
	row(tw, "firewall", p.FirewallEnabled, yesNo)
	row(tw, "kernel lockdown", p.KernelLockdown, func(s string) string { return s })
	row(tw, "kernel tainted", p.KernelTainted, yesNo)
	row(tw, "pending security updates", p.PendingSecurity, func(n int) string { return fmt.Sprint(n) })
	row(tw, "reboot required", p.RebootRequired, yesNo)
	row(tw, "gatekeeper", p.GatekeeperActive, yesNo)
	return tw.Flush()
}

func row[T any](w io.Writer, name string, c *policies.Claim[T], format func(T) string) {
	if c == nil {
		fmt.Fprintf(w, "%s\tunknown\t-\t-\n", name)
		return
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", name, sanitize(format(c.Value)), c.Source, formatTime(c.ObservedAt))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func formatOS(o policies.OSInfo) string {
	parts := []string{o.Distribution, o.Version}
	if o.Build != "" {
		parts = append(parts, "("+o.Build+")")
	}
	if o.Kernel != "" {
		parts = append(parts, "kernel "+o.Kernel)
	}
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// sanitize keeps values read from the machine (os-release strings) from breaking the table or
// the terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\t' {
			return '?'
		}
		return r
	}, s)
}
