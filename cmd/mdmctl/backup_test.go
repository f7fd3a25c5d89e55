package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/mdmserver/backup"
)

func TestBackupCommand(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(e.dir, "hale.tar.gz")
	r := e.as(e.admin).ok(t, "backup", "--out", out)
	if !strings.Contains(r.stdout, "backup written to "+out) || !strings.Contains(r.stdout, "master key is not in it") {
		t.Fatalf("backup: %s", r.stdout)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := backup.Check(f); err != nil {
		t.Fatalf("the saved archive does not check: %v", err)
	}
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode %v, want 0600", fi.Mode().Perm())
	}

	// Never over an existing file; an auditor may not take one.
	before, _ := os.ReadFile(out)
	e.as(e.admin).fails(t, 1, "backup", "--out", out)
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Fatal("a refused backup changed the existing file")
	}
	e.as(e.token("auditor")).fails(t, 3, "backup", "--out", filepath.Join(e.dir, "other.tar.gz"))
	if _, err := os.Stat(filepath.Join(e.dir, "other.tar.gz")); err == nil {
		t.Fatal("a refused backup left a file")
	}
	e.as(e.admin).fails(t, 2, "backup")
}
