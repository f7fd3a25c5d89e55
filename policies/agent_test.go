package policies

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestForAgent(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	w := p.ForAgent(PlatformWindows)
	if w.Policy != "hipaa-texting" || w.Version != 3 || w.Platform != PlatformWindows {
		t.Errorf("identity = %+v", w)
	}
	if time.Duration(w.ReportMaxAge) != 15*time.Minute || time.Duration(w.ReportInterval) != 5*time.Minute {
		t.Errorf("reporting = %s / %s", time.Duration(w.ReportInterval), time.Duration(w.ReportMaxAge))
	}
	if !slices.Equal(w.ManagedData, []string{`%LOCALAPPDATA%\SecureText`, `C:\ProgramData\SecureText`}) {
		t.Errorf("managed data = %q", w.ManagedData)
	}
	if !w.ScreenLock.Required || time.Duration(w.ScreenLock.MaxIdle) != 5*time.Minute {
		t.Errorf("screen lock = %+v", w.ScreenLock)
	}
	if w.Passcode == nil || w.Passcode.MinLength != 6 || !w.EncryptionRequired || w.Integrity == nil || !w.Integrity.RequireSecureBoot {
		t.Errorf("expectations = %+v", w)
	}
	if w.MinOSVersion != "10.0.22631" || w.MinOSVersions != nil {
		t.Errorf("os = %q %v", w.MinOSVersion, w.MinOSVersions)
	}

	l := p.ForAgent(PlatformLinux)
	if l.MinOSVersions["ubuntu"] != "22.04" || l.MinOSVersion != "" || len(l.ManagedData) != 2 {
		t.Errorf("linux view = %+v", l)
	}
	// A phone has no desktop screen lock to check and no managed paths.
	i := p.ForAgent(PlatformIOS)
	if i.ScreenLock.Required || i.ManagedData != nil {
		t.Errorf("ios view = %+v", i)
	}
	// The agent's copy is its own: changing it leaves the policy alone.
	w.Passcode.MinLength = 1
	w.Integrity.RequireSecureBoot = false
	w.ManagedData[0] = "/tmp/x"
	l.MinOSVersions["ubuntu"] = "1"
	if p.Passcode.MinLength != 6 || !p.Integrity.RequireSecureBoot || p.ManagedData[PlatformWindows][0] == "/tmp/x" || p.OS.Linux["ubuntu"] != "22.04" {
		t.Error("ForAgent shares mutable state with the policy")
	}
	b, err := json.Marshal(l)
	if err != nil || !strings.Contains(string(b), `"report_interval":"5m0s"`) {
		t.Errorf("json = %s, %v", b, err)
	}
}

func TestAgentPolicyETag(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	a, b := p.ForAgent(PlatformLinux).ETag(), p.ForAgent(PlatformLinux).ETag()
	if a != b || len(a) != 34 || a[0] != '"' || a[33] != '"' {
		t.Fatalf("ETags %s %s", a, b)
	}
	// Reparsing gives the same ETag (map order does not leak in).
	q, err := Parse(p.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	q.Name, q.Version = p.Name, p.Version
	if q.ForAgent(PlatformLinux).ETag() != a {
		t.Error("ETag changed across parses")
	}
	if p.ForAgent(PlatformWindows).ETag() == a {
		t.Error("different platforms share an ETag")
	}
	q.ManagedData[PlatformLinux] = []string{"/var/lib/other"}
	if q.ForAgent(PlatformLinux).ETag() == a {
		t.Error("managed data change kept the ETag")
	}
	q.ManagedData[PlatformLinux] = p.ManagedData[PlatformLinux]
	q.Version++
	if q.ForAgent(PlatformLinux).ETag() == a {
		t.Error("version change kept the ETag")
	}
}

func TestReportIntervalDefaults(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"{}", time.Hour}, // 24h default max age, capped at 1h
		{"reporting: {max_age: 15m}", 5 * time.Minute}, // a third of max age
		{"reporting: {max_age: 1h, interval: 10m}", 10 * time.Minute},
	} {
		p, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ReportInterval(); got != tc.want {
			t.Errorf("%s: interval %s, want %s", tc.yaml, got, tc.want)
		}
	}
}
