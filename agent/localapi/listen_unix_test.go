//go:build linux || darwin

package localapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The socket is 0666 in a 0755 directory of the agent's: any local user can connect, none can
// replace it; a stale socket is replaced; any other file in its place, or a directory another
// user controls, is refused.
func TestSocketPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != SocketMode {
		t.Fatalf("socket mode %v, want socket %o", fi.Mode(), SocketMode)
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != DirMode {
		t.Fatalf("directory mode %v, want %o", di.Mode(), DirMode)
	}
	// A crash leaves the socket file behind; the next start replaces it.
	ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("a stale socket: %v", err)
	}
	ln.Close()

	// A loose directory of ours is tightened.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ln, err = Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if di, _ := os.Stat(dir); di.Mode().Perm() != DirMode {
		t.Fatalf("directory mode %v after Listen", di.Mode())
	}

	// A regular file where the socket goes is not removed.
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatal("the file was touched")
	}
	if _, err := Listen("relative.sock"); err == nil {
		t.Fatal("a relative path was accepted")
	}

	if os.Geteuid() != 0 {
		return
	}
	// A directory another user owns could hold their socket: refused.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(filepath.Join(other, "agent.sock")); err == nil || !strings.Contains(err.Error(), "not owned") {
		t.Fatalf("Listen in another user's directory: %v", err)
	}
}

// An allow-list entry another user could replace is refused; a root-owned one resolves.
func TestCheckExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "chat")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := CheckExecutable(filepath.Join(dir, "link"))
	if err != nil {
		t.Fatal(err)
	}
	if real, _ := filepath.EvalSymlinks(exe); got != real {
		t.Fatalf("resolved %s, want %s", got, real)
	}
	if err := os.Chmod(exe, 0o775); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckExecutable(exe); err == nil {
		t.Fatal("a group-writable executable was accepted")
	}
	if _, err := CheckExecutable("bin/chat"); err == nil {
		t.Fatal("a relative path was accepted")
	}
	if _, err := CheckExecutable(dir); err == nil {
		t.Fatal("a directory was accepted")
	}
}
