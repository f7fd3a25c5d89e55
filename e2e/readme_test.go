package e2e

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The README's tour, run as written, so it cannot drift: every ```sh block between the
// <!-- tour --> and <!-- /tour --> markers, top to bottom, in one bash with -euo pipefail, in a
// fresh copy of the repository. The one change is the port (in the script and HALE_LISTEN), so
// the test can run beside a server a developer has on 8443.
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("the tour builds and runs every binary")
	}
	for _, tool := range []string{"bash", "curl", "jq", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README tour needs %s (.ci/run installs it): %v", tool, err)
		}
	}
	// The tour enrolls this machine and wipes it: the agent removes the example policy's
	// managed_data (~/.local/share/securetext of every local user, root included). That is
	// harmless on a CI machine; elsewhere it runs only when asked.
	if os.Getenv("CI") == "" && os.Getenv("HALE_README_TOUR") == "" {
		t.Skip("the README tour wipes this machine's example app data: set CI or HALE_README_TOUR=1 to run it")
	}
	requireRoot(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	script := tourScript(t, readme)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	script = strings.ReplaceAll(script, "8443", port)

	dir := filepath.Join(t.TempDir(), "hale")
	copyRepo(t, repo, dir)
	// Background jobs the tour starts (the server, the agent) end with the script.
	full := "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", full)
	cmd.Dir = dir
	// The tour's ~ is the home the agent wipes: root's, as /etc/passwd names it (the agent wipes
	// "~/" paths in every local user's home). mdmctl's profile goes to a directory of its own;
	// Go's caches stay where they are.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	appData := filepath.Join(me.HomeDir, ".local", "share", "securetext")
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	caches := strings.Fields(string(goenv))
	cmd.Env = append(os.Environ(), "HOME="+me.HomeDir, "XDG_CONFIG_HOME="+filepath.Join(dir, "home", ".config"),
		"HALE_LISTEN=127.0.0.1:"+port, "GOCACHE="+caches[0], "GOMODCACHE="+caches[1], "GOPATH="+caches[2])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README tour failed: %v\n--- script ---\n%s\n--- output ---\n%s", err, full, out)
	}
	t.Logf("README tour output:\n%s", out)
	for _, want := range []string{`"allow": false`, "session-revoked", "device.wiped", "verified", "gone: ~/.local/share/securetext"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the tour's output does not show %q", want)
		}
	}
	// The file the tour made is what the wipe reports removed, and it is gone: a wipe that
	// skipped root's home would say absent or refused, and leave it.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^state: +acknowledged$`),
		regexp.MustCompile(`(?m)^result: +done$`),
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(appData) + ` +removed `),
	} {
		if !want.Match(out) {
			t.Errorf("the wipe's result does not show %s", want)
		}
	}
	if _, err := os.Lstat(appData); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s survived the tour's wipe: %v", appData, err)
	}
}

// tourScript returns the shell blocks of the README's tour.
func tourScript(t *testing.T, readme []byte) string {
	t.Helper()
	_, rest, ok := bytes.Cut(readme, []byte("<!-- tour -->"))
	tour, _, ok2 := bytes.Cut(rest, []byte("<!-- /tour -->"))
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- tour --> ... <!-- /tour --> section")
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(tour, -1)
	if len(blocks) == 0 {
		t.Fatal("the README tour has no ```sh blocks")
	}
	var b strings.Builder
	for _, m := range blocks {
		b.Write(m[1])
	}
	return b.String()
}

// copyRepo copies the repository's regular files (not .git, not what a run leaves behind) to dst.
func copyRepo(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{".git": true, "hale-data": true, "agent-state": true, "bin": true}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			if skip[d.Name()] && rel != "." {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}
