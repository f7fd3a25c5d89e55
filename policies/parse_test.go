package policies

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustReadFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParseFixture(t testing.TB, name string) *Policy {
	t.Helper()
	p, err := Parse(mustReadFixture(t, name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	p.Name = strings.TrimSuffix(name, filepath.Ext(name))
	p.Version = 3
	return p
}

func TestParseFixtures(t *testing.T) {
	for _, name := range []string{"hipaa-texting.yaml", "byod.yaml", "kiosk.yaml"} {
		t.Run(name, func(t *testing.T) {
			data := mustReadFixture(t, name)
			p, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Canonical()
			// Canonical JSON is itself a valid policy with the same canonical form.
			p2, err := Parse(c)
			if err != nil {
				t.Fatalf("canonical JSON does not parse back: %v\n%s", err, c)
			}
			if c2 := p2.Canonical(); !bytes.Equal(c, c2) {
				t.Fatalf("canonical round trip differs:\n%s\n%s", c, c2)
			}
		})
	}
}

func TestParseHIPAAValues(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	if !p.Passcode.Required || p.Passcode.MinLength != 6 || p.Passcode.MaxInactivityMinutes != 5 ||
		p.Passcode.MaxGraceMinutes == nil || *p.Passcode.MaxGraceMinutes != 0 || p.Passcode.MaxFailedAttempts != 10 {
		t.Errorf("passcode = %+v", p.Passcode)
	}
	if !p.Encryption.Required {
		t.Error("encryption not required")
	}
	if p.Screenshots.Allowed == nil || *p.Screenshots.Allowed {
		t.Error("screenshots should be disallowed")
	}
	if p.Backup.CloudBackupAllowed == nil || *p.Backup.CloudBackupAllowed || !p.Backup.RequireEncryptedBackup {
		t.Errorf("backup = %+v", p.Backup)
	}
	if len(p.Notifications.Apps) != 1 || p.Notifications.Apps[0] != (AppNotification{"com.example.securetext", PreviewNever}) {
		t.Errorf("apps = %+v", p.Notifications.Apps)
	}
	if p.OS.IOS != "17.4" || p.OS.Windows != "10.0.22631" || p.OS.Linux["ubuntu"] != "22.04" || p.OS.Linux["debian"] != "12" {
		t.Errorf("os = %+v", p.OS)
	}
	if !p.Integrity.BlockJailbroken || !p.Integrity.RequireSIP {
		t.Errorf("integrity = %+v", p.Integrity)
	}
	if p.ReportMaxAge() != 15*time.Minute || p.ReportInterval() != 5*time.Minute {
		t.Errorf("reporting max age %s interval %s", p.ReportMaxAge(), p.ReportInterval())
	}
	if p.GracePeriod() != 24*time.Hour || !slices.Equal(p.Grace.NoGraceFor, []string{CodeEncryptionOff}) {
		t.Errorf("grace = %+v", p.Grace)
	}
	want := []string{"/Library/Application Support/SecureText", "~/Library/Application Support/SecureText"}
	if !slices.Equal(p.ManagedData[PlatformMacOS], want) {
		t.Errorf("managed_data.macos = %q, want sorted %q", p.ManagedData[PlatformMacOS], want)
	}
}

// jailbreak_evidence: observed is the default and hashes as if left out; required is kept.
func TestParseJailbreakEvidence(t *testing.T) {
	for in, want := range map[string]JailbreakEvidence{
		"integrity: {block_jailbroken: true}":                               "",
		"integrity: {block_jailbroken: true, jailbreak_evidence: observed}": "",
		"integrity: {block_jailbroken: true, jailbreak_evidence: required}": JailbreakRequired,
	} {
		p, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if p.Integrity.JailbreakEvidence != want {
			t.Errorf("%s: evidence %q, want %q", in, p.Integrity.JailbreakEvidence, want)
		}
		again, err := Parse(p.Canonical())
		if err != nil || again.Hash() != p.Hash() {
			t.Errorf("%s: canonical %s does not round-trip: %v", in, p.Canonical(), err)
		}
	}
	a, _ := Parse([]byte("integrity: {block_jailbroken: true}"))
	b, _ := Parse([]byte("integrity: {block_jailbroken: true, jailbreak_evidence: observed}"))
	if a.Hash() != b.Hash() {
		t.Error("observed and the default hash differently")
	}
	r, _ := Parse([]byte("integrity: {block_jailbroken: true, jailbreak_evidence: required}"))
	if c := string(r.Canonical()); c != `{"integrity":{"block_jailbroken":true,"jailbreak_evidence":"required"}}` {
		t.Errorf("canonical %s", c)
	}
}

func TestParseYAMLFlowMapping(t *testing.T) {
	// Looks like JSON, is YAML: must not be refused as bad JSON.
	p, err := Parse([]byte("{passcode: {required: true}, encryption: {required: true}}"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Passcode.Required || !p.Encryption.Required {
		t.Errorf("policy = %s", p.Canonical())
	}
}

func TestParseJSONForms(t *testing.T) {
	for in, want := range map[string]string{
		`{"passcode":{"required":true,"min_length":6}}`:                        `{"passcode":{"required":true,"min_length":6}}`,
		`{"description":"a\/b \u00e9 \"q\""}`:                                  `{"description":"a/b é \"q\""}`,
		`{"managed_data":{"windows":["C:\\ProgramData\\SecureText"]}}`:         `{"managed_data":{"windows":["C:\\ProgramData\\SecureText"]}}`,
		`{"managed_data":{"linux":["\/var\/lib\/x"]},"grace":{"period":"1h"}}`: `{"grace":{"period":"1h0m0s"},"managed_data":{"linux":["/var/lib/x"]}}`,
	} {
		p, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("Parse(%s): %v", in, err)
			continue
		}
		if got := string(p.Canonical()); got != want {
			t.Errorf("Parse(%s) = %s, want %s", in, got, want)
		}
	}
	checkProblems(t, "{\n\"description\": \"a\\/b\",\n\"passcode\": {\"min_length\": 99}\n}",
		[]wantProblem{{"passcode.min_length", 3, "between"}})
}

func TestParseBOMAndCRLF(t *testing.T) {
	for _, in := range []string{
		"\ufeff{\"encryption\": {\"required\": true}}",
		"\ufeffencryption:\r\n  required: true\r\n",
		"encryption:\r\n  required: true\r\n",
	} {
		p, err := Parse([]byte(in))
		if err != nil || p.Encryption == nil || !p.Encryption.Required {
			t.Errorf("Parse(%q) = %v", in, err)
		}
	}
	checkProblems(t, "passcode:\r\n  required: true\r\n  min_length: 99\r\n",
		[]wantProblem{{"passcode.min_length", 3, "between"}})
}

func TestParseShorthands(t *testing.T) {
	p, err := Parse([]byte("os:\n  ubuntu: 22.04\n  ios: 17.4.1\n  debian: 12\ngrace: 36h\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Unquoted versions are YAML numbers; the literal text must survive ("22.04", not "22.4").
	if p.OS.Linux["ubuntu"] != "22.04" || p.OS.Linux["debian"] != "12" || p.OS.IOS != "17.4.1" {
		t.Errorf("os = %+v", p.OS)
	}
	if p.GracePeriod() != 36*time.Hour {
		t.Errorf("grace = %s", p.GracePeriod())
	}
}

func TestCanonicalIgnoresOrderAndFormat(t *testing.T) {
	a, err := Parse([]byte(`
passcode: {min_length: 6, required: true}
notifications:
  apps:
    - {bundle_id: com.b.app, previews: never}
    - {bundle_id: com.a.app, previews: always}
managed_data:
  linux: [/var/lib/b, /var/lib/a]
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(`{"managed_data": {"linux": ["/var/lib/a", "/var/lib/b"]},
"notifications": {"apps": [{"previews": "always", "bundle_id": "com.a.app"}, {"bundle_id": "com.b.app", "previews": "never"}]},
"passcode": {"required": true, "min_length": 6}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Canonical(), b.Canonical()) || a.Hash() != b.Hash() {
		t.Errorf("canonical forms differ:\n%s\n%s", a.Canonical(), b.Canonical())
	}
	a.Name, a.Version = "x", 7
	if a.Hash() != b.Hash() {
		t.Error("name and version must not change the content hash")
	}
}

type wantProblem struct {
	field string
	line  int
	msg   string // substring
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []wantProblem
	}{
		{"unknown top-level field", "passcode:\n  required: true\npasscodes: {}\n",
			[]wantProblem{{"passcodes", 3, "unknown field"}}},
		{"unknown nested field", "passcode:\n  min_lenght: 6\n",
			[]wantProblem{{"passcode.min_lenght", 2, "known fields are"}}},
		{"absurd min_length", "passcode:\n  required: true\n  min_length: 500\n",
			[]wantProblem{{"passcode.min_length", 3, "between 0 and 16"}}},
		{"negative", "passcode:\n  max_failed_attempts: -1\n",
			[]wantProblem{{"passcode.max_failed_attempts", 2, "between 2 and 11"}}},
		{"float for int", "passcode:\n  min_length: 6.5\n",
			[]wantProblem{{"passcode.min_length", 2, "whole number"}}},
		{"yes is not a bool", "encryption:\n  required: yes\n",
			[]wantProblem{{"encryption.required", 2, "true or false"}}},
		{"string for bool", "screenshots:\n  allowed: \"false\"\n",
			[]wantProblem{{"screenshots.allowed", 2, "true or false"}}},
		{"empty section", "encryption:\n",
			[]wantProblem{{"encryption", 1, "is empty"}}},
		{"section not a mapping", "backup: [1]\n",
			[]wantProblem{{"backup", 1, "must be a mapping"}}},
		{"unknown platform", "os:\n  blackberry: \"10\"\n",
			[]wantProblem{{"os.blackberry", 2, "unknown platform"}}},
		{"android too old", "os:\n  android: \"5\"\n",
			[]wantProblem{{"os.android", 2, "not a release"}}},
		{"android patch not a date", "os:\n  android_security_patch: \"2026-13-01\"\n",
			[]wantProblem{{"os.android_security_patch", 2, "ISO date"}}},
		{"bad version", "os:\n  ios: seventeen\n",
			[]wantProblem{{"os.ios", 2, "not a version"}}},
		{"unknown jailbreak evidence", "integrity:\n  block_jailbroken: true\n  jailbreak_evidence: attested\n",
			[]wantProblem{{"integrity.jailbreak_evidence", 3, "must be observed"}}},
		{"jailbreak evidence not a string", "integrity:\n  block_jailbroken: true\n  jailbreak_evidence: true\n",
			[]wantProblem{{"integrity.jailbreak_evidence", 3, "must be a string"}}},
		{"jailbreak evidence without the rule", "integrity:\n  jailbreak_evidence: required\n  require_sip: true\n",
			[]wantProblem{{"integrity.jailbreak_evidence", 2, "set block_jailbroken: true"}}},
		{"bad distro id", "os:\n  linux:\n    Ubuntu: \"22.04\"\n",
			[]wantProblem{{"os.linux", 3, "os-release ID"}}},
		{"bad bundle ids", "notifications:\n  apps:\n    - bundle_id: securetext\n      previews: never\n    - bundle_id: com..x\n      previews: never\n    - bundle_id: com.ex ample\n      previews: never\n",
			[]wantProblem{
				{"notifications.apps[0].bundle_id", 3, "two components"},
				{"notifications.apps[1].bundle_id", 5, "empty component"},
				{"notifications.apps[2].bundle_id", 7, "letters, digits"},
			}},
		{"bad previews and missing bundle", "notifications:\n  apps:\n    - previews: sometimes\n",
			[]wantProblem{
				{"notifications.apps[0].previews", 3, "never, when_unlocked or always"},
				{"notifications.apps[0].bundle_id", 3, "is required"},
			}},
		{"duplicate bundle id", "notifications:\n  apps:\n    - {bundle_id: com.a.b, previews: never}\n    - {bundle_id: com.a.b, previews: always}\n",
			[]wantProblem{{"notifications.apps[1].bundle_id", 4, "already listed on line 3"}}},
		{"duplicate key", "passcode:\n  required: true\n  required: false\n",
			[]wantProblem{{"passcode.required", 3, "more than once"}}},
		{"alias", "a: &x {required: true}\npasscode: *x\n",
			[]wantProblem{{"a", 1, "unknown field"}, {"passcode", 2, "aliases"}}},
		{"grace unknown code", "grace:\n  period: 1h\n  no_grace_for: [encryption_of]\n",
			[]wantProblem{{"grace.no_grace_for[0]", 3, "unknown reason code"}}},
		{"negative grace", "grace: -1h\n",
			[]wantProblem{{"grace", 1, "between"}}},
		{"interval not shorter than max age", "reporting:\n  max_age: 15m\n  interval: 15m\n",
			[]wantProblem{{"reporting.interval", 3, "shorter than max_age"}}},
		{"bad duration", "reporting:\n  max_age: fifteen minutes\n",
			[]wantProblem{{"reporting.max_age", 2, "duration"}}},
		{"max age too short", "reporting:\n  max_age: 1s\n",
			[]wantProblem{{"reporting.max_age", 2, "between"}}},
		{"complex chars above length", "passcode:\n  required: true\n  min_length: 2\n  min_complex_chars: 3\n",
			[]wantProblem{{"passcode.min_complex_chars", 4, "more than min_length"}}},
		{"bad name", "name: \"../etc\"\n",
			[]wantProblem{{"name", 1, "policy name"}}},
		{"managed data on ios", "managed_data:\n  ios: [/var/mobile]\n",
			[]wantProblem{{"managed_data.ios", 2, "managed apps"}}},
		{"managed data unknown platform", "managed_data:\n  android: [/sdcard]\n",
			[]wantProblem{{"managed_data.android", 2, "unknown field"}}},
		{"root is not a mapping", "- a\n- b\n",
			[]wantProblem{{"document", 1, "must be a mapping"}}},
		{"syntax error", "passcode:\n  required: true\n   min_length: 6\n",
			[]wantProblem{{"document", 3, "not valid YAML"}}},
		{"two documents", "passcode: {required: true}\n---\nencryption: {required: true}\n",
			[]wantProblem{{"document", 2, "more than one YAML document"}}},
		{"empty", "  \n", []wantProblem{{"document", 1, "empty"}}},
		{"comment only", "# nothing\n", []wantProblem{{"document", 1, "empty"}}},
		{"json line numbers", "{\n  \"passcode\": {\n    \"required\": true,\n    \"min_length\": 500\n  },\n  \"bogus\": 1\n}\n",
			[]wantProblem{{"passcode.min_length", 4, "between 0 and 16"}, {"bogus", 6, "unknown field"}}},
		{"json with tabs", "{\n\t\"encryption\": {\n\t\t\"required\": \"yes\"\n\t}\n}\n",
			[]wantProblem{{"encryption.required", 3, "true or false"}}},
		{"json syntax error", "{\n  \"passcode\": {\"required\": true,,}\n}\n",
			[]wantProblem{{"document", 2, "not valid"}}},
		{"many problems at once", "passcode:\n  min_length: 500\nencryption:\n  required: 1\nos:\n  beos: \"5\"\n",
			[]wantProblem{{"passcode.min_length", 2, ""}, {"encryption.required", 4, ""}, {"os.beos", 6, ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, tc.in, tc.want)
		})
	}
}

func checkProblems(t *testing.T, in string, want []wantProblem) {
	t.Helper()
	p, err := Parse([]byte(in))
	if err == nil {
		t.Fatalf("Parse succeeded: %s", p.Canonical())
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError: %v", err, err)
	}
	if len(ve.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(ve.Problems), len(want), err)
	}
	for i, w := range want {
		g := ve.Problems[i]
		if g.Field != w.field || g.Line != w.line || !strings.Contains(g.Message, w.msg) {
			t.Errorf("problem %d = %+v, want field %q line %d message containing %q", i, g, w.field, w.line, w.msg)
		}
	}
	if !strings.Contains(err.Error(), want[0].field) {
		t.Errorf("Error() = %q does not name %q", err.Error(), want[0].field)
	}
}

func TestParseSizeLimit(t *testing.T) {
	big := "description: \"" + strings.Repeat("a", MaxPolicySize) + "\"\n"
	_, err := Parse([]byte(big))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != "document" || !strings.Contains(ve.Problems[0].Message, "limit") {
		t.Fatalf("err = %v", err)
	}
	// Just under the limit is accepted as far as size goes (the long description is then refused).
	_, err = Parse([]byte("description: \"" + strings.Repeat("a", 2000) + "\"\n"))
	if err == nil || !strings.Contains(err.Error(), "description") {
		t.Fatalf("long description err = %v", err)
	}
}

func TestParseBoundsProblems(t *testing.T) {
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d: 1\n", i)
	}
	_, err := Parse([]byte(b.String()))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != maxProblems+1 {
		t.Fatalf("want %d problems, got %v", maxProblems+1, err)
	}
	if last := ve.Problems[maxProblems]; last.Field != "document" || !strings.Contains(last.Message, "more than") || last.Line != maxProblems+1 {
		t.Errorf("last problem = %+v", last)
	}
}

func TestManagedDataPaths(t *testing.T) {
	tests := []struct {
		platform Platform
		path     string
		ok       bool
	}{
		{PlatformLinux, "/var/lib/securetext", true},
		{PlatformLinux, "~/.local/share/securetext", true},
		{PlatformLinux, "~/.securetext", true},
		{PlatformLinux, "/home/alice/.securetext", true},
		{PlatformLinux, "/", false},
		{PlatformLinux, "/etc", false},
		{PlatformLinux, "/etc/securetext", false},
		{PlatformLinux, "/usr/share/securetext", false},
		{PlatformLinux, "/opt", false},
		{PlatformLinux, "/var/lib", false},
		{PlatformLinux, "/home/alice", false},
		{PlatformLinux, "..", false},
		{PlatformLinux, "/var/lib/../../etc", false},
		{PlatformLinux, "/var/lib/./x", false},
		{PlatformLinux, "", false},
		{PlatformLinux, " ", false},
		{PlatformLinux, "relative/path", false},
		{PlatformLinux, "/var/lib/x/", false},
		{PlatformLinux, "/var//lib/x", false},
		{PlatformLinux, "/var/lib/*", false},
		{PlatformLinux, "~", false},
		{PlatformLinux, "~/", false},
		{PlatformLinux, "~/.config", false},
		{PlatformLinux, "~/Documents", false},
		{PlatformMacOS, "~/Library/Application Support/SecureText", true},
		{PlatformMacOS, "/Library/Application Support/SecureText", true},
		{PlatformMacOS, "/Users/Shared/SecureText", true},
		{PlatformMacOS, "/Users/alice", false},
		{PlatformMacOS, "/users/alice", false},
		{PlatformMacOS, "/System/Library/x", false},
		{PlatformMacOS, "/system/library/x", false},
		{PlatformMacOS, "~/Library", false},
		{PlatformMacOS, "~/Library/Application Support", false},
		{PlatformMacOS, "/Library/Application Support", false},
		{PlatformMacOS, "/private/etc/x", false},
		{PlatformWindows, `%LOCALAPPDATA%\SecureText`, true},
		{PlatformWindows, `C:\ProgramData\SecureText`, true},
		{PlatformWindows, `D:\Data\SecureText`, true},
		{PlatformWindows, `C:\Users\alice\AppData\Local\SecureText`, true},
		{PlatformWindows, `~\AppData\Local\SecureText`, true},
		{PlatformWindows, `C:\`, false},
		{PlatformWindows, `C:\Windows`, false},
		{PlatformWindows, `C:\Windows\System32\config`, false},
		{PlatformWindows, `c:\windows\temp\x`, false},
		{PlatformWindows, `D:\Windows\x`, false},
		{PlatformWindows, `C:\Users`, false},
		{PlatformWindows, `C:\Users\alice`, false},
		{PlatformWindows, `C:\Data`, false},
		{PlatformWindows, `C:\Program Files`, false},
		{PlatformWindows, `%LOCALAPPDATA%`, false},
		{PlatformWindows, `%SYSTEMROOT%\System32`, false},
		{PlatformWindows, `%FOO%\x`, false},
		{PlatformWindows, `~\AppData`, false},
		{PlatformWindows, `C:\Data\..\Windows`, false},
		{PlatformWindows, `C:/Data/x`, false},
		{PlatformWindows, `Data\x`, false},
		{PlatformWindows, `\\server\share\x`, false},
		{PlatformWindows, `C:\Data\a:b`, false},
	}
	for _, tc := range tests {
		err := validManagedPath(tc.platform, tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("validManagedPath(%s, %q) = %v, want ok=%v", tc.platform, tc.path, err, tc.ok)
		}
	}
	// And through Parse, with field and line.
	checkProblems(t, "managed_data:\n  linux:\n    - /var/lib/ok\n    - /etc\n    - ../x\n",
		[]wantProblem{{"managed_data.linux[1]", 4, "system or user folder"}, {"managed_data.linux[2]", 5, "relative"}})
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"hipaa-texting", "byod", "Kiosk_2", "a"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a.b", "a/b", "a b", strings.Repeat("a", 65), "é"} {
		if ValidName(bad) == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

// The example in the package documentation must stay a valid policy.
func TestDocExampleParses(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for line := range strings.SplitSeq(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//\t"); ok {
			b.WriteString(rest + "\n")
		}
	}
	p, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if p.Passcode.History != 5 || p.OS.Linux["debian"] != "12" || p.GracePeriod() != 24*time.Hour {
		t.Errorf("example parsed as %s", p.Canonical())
	}
}
