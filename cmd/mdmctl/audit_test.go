package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/mdmserver/audit"
)

func TestAuditListExportVerify(t *testing.T) {
	e := newEnv(t)
	auditor := e.as(e.token("auditor"))
	cp := filepath.Join(e.dir, "checkpoint.txt")
	r := auditor.ok(t, "audit", "checkpoint", "--save", cp)
	if !strings.Contains(r.stdout, "hale audit") || !strings.Contains(r.stdout, "verifier key") {
		t.Fatalf("checkpoint: %s", r.stdout)
	}

	// The log grows after the saved checkpoint.
	for range 3 {
		e.token("it")
	}

	// list: filters, pages, limits.
	var list struct{ Entries []audit.Entry }
	auditor.okJSON(t, &list, "audit", "list", "--action", "token.create")
	if len(list.Entries) != 4 { // the auditor's token and three more
		t.Fatalf("audit list --action token.create: %d entries", len(list.Entries))
	}
	auditor.okJSON(t, &list, "audit", "list", "--action", "token.*", "--limit", "2", "--since", "1h")
	if len(list.Entries) != 2 || list.Entries[0].Action != "token.create" {
		t.Fatalf("audit list --limit 2: %+v", list.Entries)
	}
	r = auditor.ok(t, "audit", "list", "--action", "token.create")
	if strings.Count(r.stdout, "token.create") != 4 || !strings.Contains(r.stdout, "INDEX") {
		t.Fatalf("audit list table: %s", r.stdout)
	}
	auditor.fails(t, exitUsage, "audit", "list", "--since", "last tuesday")
	e.as(e.token("it")).fails(t, exitAuth, "audit", "list")

	// verify against the saved checkpoint, online: with the key file and with the key itself.
	r = auditor.ok(t, "audit", "verify", "--checkpoint", cp, "--key", e.auditKeyPath())
	for _, want := range []string{"saved checkpoint signature valid", "proved: the log of", "consistency proof", "match the latest checkpoint", "verified"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	key, err := os.ReadFile(e.auditKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	var rep verifyReport
	auditor.okJSON(t, &rep, "audit", "verify", "--checkpoint", cp, "--key", strings.TrimSpace(string(key)))
	if !rep.Verified || rep.LatestSize <= rep.SavedSize || rep.ExportEntries < rep.LatestSize || rep.Offline {
		t.Fatalf("verify report: %+v", rep)
	}

	// The key must come from the user, and must be the log's.
	r = auditor.fails(t, exitUsage, "audit", "verify", "--checkpoint", cp)
	if !strings.Contains(r.stderr, "--key") {
		t.Errorf("no --key: %s", r.stderr)
	}
	_, otherKey, err := audit.GenerateKey("hale-audit")
	if err != nil {
		t.Fatal(err)
	}
	auditor.fails(t, exitVerify, "audit", "verify", "--checkpoint", cp, "--key", otherKey)
	auditor.fails(t, exitUsage, "audit", "verify", "--checkpoint", cp, "--key", "not-a-key")

	// export, then verify offline; to stdout too.
	export := filepath.Join(e.dir, "audit.jsonl")
	auditor.ok(t, "audit", "export", "--out", export)
	r = auditor.ok(t, "audit", "verify", "--checkpoint", cp, "--key", e.auditKeyPath(), "--from-file", export)
	if !strings.Contains(r.stdout, "offline") || !strings.Contains(r.stdout, "unchanged since the saved checkpoint") {
		t.Fatalf("offline verify: %s", r.stdout)
	}
	r = auditor.ok(t, "audit", "export")
	lines := bytes.Split(bytes.TrimSpace([]byte(r.stdout)), []byte("\n"))
	if len(lines) < 5 {
		t.Fatalf("export to stdout: %d lines", len(lines))
	}

	// A tampered line: the entry at fault is named and the exit status is 6.
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	lines = bytes.Split(b, []byte("\n"))
	var entry map[string]any
	if err := json.Unmarshal(lines[1], &entry); err != nil {
		t.Fatal(err)
	}
	entry["actor"] = "someone-else"
	lines[1], _ = json.Marshal(entry)
	tampered := filepath.Join(e.dir, "tampered.jsonl")
	os.WriteFile(tampered, bytes.Join(lines, []byte("\n")), 0o600)
	r = auditor.fails(t, exitVerify, "audit", "verify", "--checkpoint", cp, "--key", e.auditKeyPath(), "--from-file", tampered)
	if !strings.Contains(r.stderr, "entry 1 changed") {
		t.Fatalf("tampered export: %s", r.stderr)
	}
	var failed verifyReport
	r = auditor.fails(t, exitVerify, "audit", "verify", "--checkpoint", cp, "--key", e.auditKeyPath(), "--from-file", tampered, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &failed); err != nil || failed.Verified || failed.FailedIndex == nil || *failed.FailedIndex != 1 || failed.FailedKind != audit.KindChanged {
		t.Fatalf("failure report: %v %s", err, r.stdout)
	}

	// A removed line.
	removed := filepath.Join(e.dir, "removed.jsonl")
	orig := bytes.Split(b, []byte("\n")) // untampered: one fault at a time
	os.WriteFile(removed, bytes.Join(append(append([][]byte{}, orig[:2]...), orig[3:]...), []byte("\n")), 0o600)
	r = auditor.fails(t, exitVerify, "audit", "verify", "--checkpoint", cp, "--key", e.auditKeyPath(), "--from-file", removed)
	if !strings.Contains(r.stderr, "entry 2 ") {
		t.Fatalf("removed line: %s", r.stderr)
	}

	// A forged checkpoint file: its signature does not verify.
	forged, _ := os.ReadFile(cp)
	forged = bytes.Replace(forged, []byte("\n"), []byte("\n9"), 1)
	forgedPath := filepath.Join(e.dir, "forged.txt")
	os.WriteFile(forgedPath, forged, 0o600)
	auditor.fails(t, exitVerify, "audit", "verify", "--checkpoint", forgedPath, "--key", e.auditKeyPath(), "--from-file", export)
}
