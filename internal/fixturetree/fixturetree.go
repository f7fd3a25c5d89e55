// Package fixturetree materializes a fixture machine for tests: a directory tree of regular
// files standing for "/", plus the symlinks listed next to it in NAME.symlinks ("/link -> target"
// per line). Keeping symlinks in a manifest lets the tree survive Go module zips and checkouts
// on any OS; the agent's collector tests and the end-to-end tests share the format.
package fixturetree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Copy copies the tree at src to dst (which must not exist) and recreates the symlinks listed in
// src+".symlinks". It returns dst.
func Copy(t testing.TB, src, dst string) string {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(src + ".symlinks")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		if l == "" {
			continue
		}
		link, target, ok := strings.Cut(l, " -> ")
		if !ok || !strings.HasPrefix(link, "/") || strings.Contains(link, "..") {
			t.Fatalf("%s.symlinks: bad line %q", filepath.Base(src), l)
		}
		p := filepath.Join(dst, filepath.FromSlash(link))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
