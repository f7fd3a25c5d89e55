package collect

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvResolveStaysInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("inside\n"), 0o644))
	must(os.Symlink("../../../../../../etc", filepath.Join(root, "up")))     // climbs past root
	must(os.Symlink("/etc", filepath.Join(root, "abs")))                     // absolute: root-relative
	must(os.Symlink("/etc/../../../etc/passwd", filepath.Join(root, "mix"))) // .. at root stays at root
	must(os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(os.Symlink("loop1", filepath.Join(root, "loop2")))
	env := &Env{Root: root}
	for _, name := range []string{"/up/passwd", "/abs/passwd", "/mix", "/../../etc/passwd"} {
		b, err := env.ReadFile(name)
		if err != nil || string(b) != "inside\n" {
			t.Errorf("%s: %q, %v (resolved outside the root?)", name, b, err)
		}
		rp, err := env.Realpath(name)
		if err != nil || rp != "/etc/passwd" {
			t.Errorf("Realpath(%s) = %q, %v", name, rp, err)
		}
	}
	if _, err := env.ReadFile("/loop1"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("symlink loop: %v", err)
	}
	if _, err := env.ReadFile("etc/passwd"); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("relative path: %v", err)
	}
	if _, err := env.ReadFile("/nope/passwd"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if ok, err := env.Exists("/abs/passwd"); !ok || err != nil {
		t.Errorf("Exists: %v %v", ok, err)
	}
}

func TestEnvReadFileBounded(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "big"), make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Env{Root: root}).ReadFile("/big"); err == nil {
		t.Error("oversized file read")
	}
}
