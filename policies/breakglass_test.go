package policies

import (
	"strings"
	"testing"
	"time"
)

func TestParseBreakGlass(t *testing.T) {
	p, err := Parse([]byte(`
name: bg
grace: {period: 24h, warn_before: 4h}
break_glass:
  allowed: true
  duration: 4h
  max_uses: 1
  per: 24h
  overridable: [report_stale, os_too_old, screen_lock_timeout_too_long]
`))
	if err != nil {
		t.Fatal(err)
	}
	b := p.BreakGlass
	if !b.Allowed || b.BreakGlassDuration() != 4*time.Hour || b.Limit() != 1 || b.Window() != 24*time.Hour ||
		strings.Join(b.Overridable, ",") != "os_too_old,report_stale,screen_lock_timeout_too_long" {
		t.Fatalf("%+v", b)
	}
	if p.Grace.WarnBefore != Duration(4*time.Hour) {
		t.Fatalf("warn_before %v", p.Grace.WarnBefore)
	}
	for yaml, want := range map[string]string{
		"break_glass: {allowed: true, overridable: [jailbroken]}":                "break_glass.overridable[0]",
		"break_glass: {allowed: true, overridable: [app_not_attested]}":          "can never be overridden",
		"break_glass: {allowed: true, overridable: [no_such_code]}":              "unknown reason code",
		"break_glass: {allowed: true}":                                           "needs an overridable list",
		"break_glass: {allowed: true, duration: 48h, overridable: [os_too_old]}": "break_glass.duration",
		"break_glass: {allowed: true, overridable: [os_too_old, os_too_old]}":    "more than once",
		"break_glass: {allowed: true, max_uses: 0, overridable: [os_too_old]}":   "break_glass.max_uses",
		"break_glass: {allowed: yes-please, overridable: [os_too_old]}":          "break_glass.allowed",
	} {
		_, err := Parse([]byte("name: bg\n" + yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", yaml, err, want)
		}
	}
}
