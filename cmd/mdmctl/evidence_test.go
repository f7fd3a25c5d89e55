package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/halemdm/hale/mdmserver/audit"
)

// The evidence pack holds every part, each file matches the server-signed manifest, the
// transcript says verified, no secret is in it, and the export is on the audit record.
func TestEvidencePack(t *testing.T) {
	e := newEnv(t)
	itTok, auditorTok, securityTok := e.token("it"), e.token("auditor"), e.token("security")
	it := e.as(itTok)
	it.ok(t, "policy", "apply", "hipaa", "../../examples/policies/hipaa-texting.yaml")
	auditor := e.as(auditorTok)
	saved := filepath.Join(e.dir, "saved.txt")
	auditor.ok(t, "audit", "checkpoint", "--save", saved)
	e.token("security") // the log grows past the saved checkpoint

	drills := filepath.Join(e.dir, "drills")
	os.MkdirAll(drills, 0o700)
	os.WriteFile(filepath.Join(drills, "drill-d_1-20261201T100000Z.md"), []byte("# drill\npass\n"), 0o600)
	os.WriteFile(filepath.Join(drills, "notes.txt"), []byte("not a drill report"), 0o600)

	out := filepath.Join(e.dir, "pack")
	r := auditor.ok(t, "evidence", "--out", out, "--key", e.auditKeyPath(), "--checkpoint", saved, "--drill-reports", drills)
	if !strings.Contains(r.stdout, "verified with your key") {
		t.Fatalf("evidence: %s", r.stdout)
	}
	for _, name := range []string{"README.md", "MANIFEST", "audit/audit.jsonl", "audit/checkpoint.txt", "audit/verification.txt",
		"audit/saved-checkpoint.txt", "coverage/coverage.csv", "coverage/coverage.md", "coverage/coverage.json",
		"policies/policies.json", "policies/history.csv", "access/tokens.csv", "access/token-history.csv", "access/break-glass.json", "access/break-glass-unreviewed.csv",
		"drills/drill-d_1-20261201T100000Z.md", "server/config.json"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("the pack lacks %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "drills", "notes.txt")); err == nil {
		t.Error("a file that is not a drill report was copied")
	}
	transcript, _ := os.ReadFile(filepath.Join(out, "audit", "verification.txt"))
	if !strings.Contains(string(transcript), "result: VERIFIED") || !strings.Contains(string(transcript), "your saved checkpoint: signature valid") {
		t.Fatalf("transcript:\n%s", transcript)
	}

	// The manifest: signed with the audit key, and every file matches its line.
	pub, _ := os.ReadFile(e.auditKeyPath())
	v, err := audit.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := os.ReadFile(filepath.Join(out, "MANIFEST"))
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("MANIFEST does not verify with audit.pub: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(n.Text))
	sc.Scan()
	if sc.Text() != "hale evidence manifest" {
		t.Fatalf("manifest header %q", sc.Text())
	}
	sc.Scan() // the time
	files := 0
	for sc.Scan() {
		var sum, size, name string
		parts := strings.SplitN(sc.Text(), " ", 3)
		sum, size, name = parts[0], parts[1], parts[2]
		b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sum || size == "" {
			t.Fatalf("%s does not match the manifest", name)
		}
		files++
	}
	if files < 14 {
		t.Fatalf("the manifest lists %d files", files)
	}

	// No secret anywhere in the pack: no token's secret, not the master key.
	masterKey, err := os.ReadFile(filepath.Join(e.cfg.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{e.admin, itTok, auditorTok, securityTok, strings.TrimSpace(string(masterKey))}
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, secret := range secrets {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s holds a secret", p)
			}
		}
		return nil
	})
	cov, _ := os.ReadFile(filepath.Join(out, "coverage", "coverage.md"))
	if !strings.Contains(string(cov), "| all | all |") {
		t.Fatalf("coverage.md:\n%s", cov)
	}
	hist, _ := os.ReadFile(filepath.Join(out, "policies", "history.csv"))
	if !strings.Contains(string(hist), "policy.put") {
		t.Fatalf("policy history:\n%s", hist)
	}

	// On the record; and the pack is not written over, nor without a pinned key.
	var list struct{ Entries []audit.Entry }
	auditor.okJSON(t, &list, "audit", "list", "--action", "evidence.export")
	if len(list.Entries) != 1 {
		t.Fatalf("evidence.export entries: %+v", list.Entries)
	}
	auditor.fails(t, 1, "evidence", "--out", out, "--key", e.auditKeyPath())
	auditor.fails(t, 2, "evidence", "--out", filepath.Join(e.dir, "other"))
	e.as(e.token("it")).fails(t, 3, "evidence", "--out", filepath.Join(e.dir, "it-pack"), "--key", e.auditKeyPath())
}
