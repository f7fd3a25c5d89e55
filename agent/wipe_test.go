package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
)

// outcomes returns "path outcome" for each result, and the reasons by path.
func outcomes(res []state.PathResult) ([]string, map[string]string) {
	var out []string
	why := map[string]string{}
	for _, r := range res {
		out = append(out, r.Path+" "+r.Outcome)
		why[r.Path] = r.Reason
	}
	return out, why
}

func TestPlanWipeJudgesEachAbsolutePath(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(root, "alice", "app", "db"))
	mustWrite(t, filepath.Join(outside, "secret"))
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(root, "agent-state")
	roots := []string{root}
	for _, tc := range []struct {
		path string
		why  string // "" when the path may be removed
	}{
		{filepath.Join(root, "alice", "app"), ""},
		{filepath.Join(root, "alice", "app", "..", "app", "db"), ""},
		{filepath.Join(root, "link"), ""}, // the link itself is removed, not its target
		{filepath.Join(root, "nothing", "here"), ""},
		{"relative/path", "absolute"},
		{"/", "filesystem root"},
		{root, "allowed root"},
		{root + "/", "allowed root"},
		{filepath.Join(root, ".."), "allowed root"},
		{filepath.Join(root, "..", filepath.Base(outside), "secret"), "allowed root"},
		{root + "-sibling/x", "allowed root"},
		{filepath.Join(root, "link", "secret"), "symbolic link"},
		{"/etc/passwd", "allowed root"},
		{"/root/.local/share/securetext", "allowed root"}, // absolute paths stay inside the roots
		{stateDir, "own state"},
		{filepath.Join(stateDir, "device.key"), "own state"},
		{root + "/a\x00b", "NUL"},
	} {
		targets, err := planWipe([]string{tc.path}, nil, roots, stateDir)
		if err != nil || len(targets) != 1 {
			t.Fatalf("%q: %v %+v", tc.path, err, targets)
		}
		got := targets[0]
		if tc.why == "" && got.refused != "" {
			t.Errorf("%q refused: %s", tc.path, got.refused)
		}
		if tc.why != "" && !strings.Contains(got.refused, tc.why) {
			t.Errorf("%q: refused %q, want a reason mentioning %q", tc.path, got.refused, tc.why)
		}
		if got.managed != tc.path {
			t.Errorf("%q: managed %q", tc.path, got.managed)
		}
	}
	if _, err := planWipe(nil, nil, roots, stateDir); err == nil {
		t.Error("an empty managed data list was accepted")
	}
	// The state directory inside a wipe path is refused too.
	targets, _ := planWipe([]string{filepath.Join(root, "alice")}, nil, roots, filepath.Join(root, "alice", "st"))
	if !strings.Contains(targets[0].refused, "own state") {
		t.Errorf("a path containing the state directory: %+v", targets[0])
	}
}

// "~/" paths are wiped in every local user's home, root's included, each confined to its home;
// one refused path leaves the others to be removed, and every path is reported.
func TestWipeHomesOfEveryUserRootIncluded(t *testing.T) {
	base := t.TempDir()
	outside := t.TempDir()
	rootHome := filepath.Join(base, "root")           // outside the wipe roots, like /root
	alice := filepath.Join(base, "home", "alice")     // inside them
	mallory := filepath.Join(base, "home", "mallory") // plants a link to escape
	ghost := filepath.Join(base, "home", "ghost")     // a user whose home does not exist
	roots := []string{filepath.Join(base, "home")}
	for _, h := range []string{rootHome, alice} {
		mustWrite(t, filepath.Join(h, ".local", "share", "securetext", "messages.db"))
	}
	mustWrite(t, filepath.Join(outside, "share", "securetext", "keep.db"))
	if err := os.MkdirAll(mallory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(mallory, ".local")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(base, "srv", "x")) // an absolute path outside the roots
	homes := []string{rootHome, alice, mallory, ghost, alice, "/"}
	managed := []string{"~/.local/share/securetext", filepath.Join(base, "srv", "x"), "~/../escape", "~/.", "~/"}

	targets, err := planWipe(managed, homes, roots, filepath.Join(base, "state"))
	if err != nil {
		t.Fatal(err)
	}
	results := doWipe(targets)
	got, why := outcomes(results)
	p := func(h string) string { return filepath.Join(h, ".local", "share", "securetext") }
	want := []string{
		p(rootHome) + " removed", p(alice) + " removed", p(mallory) + " refused", p(ghost) + " absent",
		"/.local/share/securetext refused", filepath.Join(base, "srv", "x") + " refused",
		"~/../escape refused", "~/. refused", "~/ refused",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("outcomes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for path, reason := range map[string]string{
		p(mallory): "symbolic link", "/.local/share/securetext": "filesystem root",
		filepath.Join(base, "srv", "x"): "allowed root", "~/../escape": "leaves the home", "~/.": "whole home", "~/": "whole home",
	} {
		if !strings.Contains(why[path], reason) {
			t.Errorf("%s: reason %q, want one mentioning %q", path, why[path], reason)
		}
	}
	for _, h := range []string{rootHome, alice} {
		if _, err := os.Lstat(p(h)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived the wipe", p(h))
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "share", "securetext", "keep.db")); err != nil {
		t.Errorf("the wipe followed a planted link: %v", err)
	}
	res := wipeResult(results)
	if res.Status != state.StatusPartial || !strings.Contains(res.Detail, "2 removed, 1 absent, 6 refused, 0 failed of 9") {
		t.Fatalf("result %+v", res)
	}

	// With no home to expand a "~/" path in, the path is refused, not silently skipped.
	targets, _ = planWipe([]string{"~/.local/share/securetext"}, nil, roots, "")
	if got, _ := outcomes(doWipe(targets)); !slices.Equal(got, []string{"~/.local/share/securetext refused"}) {
		t.Fatalf("no homes: %v", got)
	}
}

func TestDoWipeRemovesOnlyTheLinkAndReportsAbsent(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "secret"))
	link := filepath.Join(root, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	targets, err := planWipe([]string{link, filepath.Join(root, "absent")}, nil, []string{root}, "")
	if err != nil {
		t.Fatal(err)
	}
	res := wipeResult(doWipe(targets))
	got, _ := outcomes(res.Paths)
	if res.Status != state.StatusDone || !slices.Equal(got, []string{link + " removed", filepath.Join(root, "absent") + " absent"}) ||
		!slices.Equal(res.Removed, []string{link}) || !strings.Contains(res.Detail, "1 removed, 1 absent, 0 refused, 0 failed") {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Fatal("the link's target was removed")
	}
}

// A directory swapped for a link to elsewhere after planning: os.Root refuses to follow it, the
// path is reported failed and the data it points at stays.
func TestWipeReportsFailureWhenALinkIsSwappedIn(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(root, "alice", "app", "db"))
	mustWrite(t, filepath.Join(outside, "db"))
	targets, err := planWipe([]string{filepath.Join(root, "alice", "app", "db")}, nil, []string{root}, "")
	if err != nil || targets[0].refused != "" {
		t.Fatalf("plan: %v %+v", err, targets)
	}
	if err := os.RemoveAll(filepath.Join(root, "alice", "app")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "alice", "app")); err != nil {
		t.Fatal(err)
	}
	res := wipeResult(doWipe(targets))
	if res.Status != state.StatusPartial || len(res.Paths) != 1 || res.Paths[0].Outcome != state.OutcomeFailed || res.Paths[0].Reason == "" {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(outside, "db")); err != nil {
		t.Fatal("the wipe followed a link swapped in after planning")
	}
}

// A result too long to post keeps what was left behind and drops absent paths first.
func TestWipeResultIsBounded(t *testing.T) {
	var paths []state.PathResult
	for i := range 3000 {
		paths = append(paths, state.PathResult{Path: fmt.Sprintf("/home/u%d/.app", i), Outcome: state.OutcomeAbsent})
	}
	for i := range 5 {
		paths = append(paths, state.PathResult{Path: fmt.Sprintf("/x/%d", i), Outcome: state.OutcomeRefused, Reason: strings.Repeat("r", 5000)})
	}
	res := wipeResult(paths)
	refused := 0
	for _, p := range res.Paths {
		if p.Outcome == state.OutcomeRefused {
			refused++
			if len(p.Reason) > maxReasonLen {
				t.Fatalf("reason of %d bytes kept", len(p.Reason))
			}
		}
	}
	if len(res.Paths) > maxResultPaths || refused != 5 || res.Status != state.StatusPartial || !strings.Contains(res.Detail, "not listed here") {
		t.Fatalf("%d paths, %d refused, status %s, detail %s", len(res.Paths), refused, res.Status, res.Detail)
	}
}

func TestHomeRelativeAndLocalHomes(t *testing.T) {
	for in, want := range map[string]string{
		"~/.local/share/x": ".local/share/x", `~\AppData\x`: "AppData/x", `%LOCALAPPDATA%\SecureText`: "AppData/Local/SecureText",
		`%localappdata%\S`: "AppData/Local/S", `%APPDATA%\S`: "AppData/Roaming/S", `%USERPROFILE%\S`: "S",
	} {
		if got, ok := homeRelative(in); !ok || got != filepath.FromSlash(want) {
			t.Errorf("homeRelative(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/abs/x", `%PROGRAMDATA%\x`, "~root/x", "~", `%LOCALAPPDATA%`} {
		if _, ok := homeRelative(in); ok {
			t.Errorf("homeRelative(%q) accepted", in)
		}
	}
	for p, ok := range map[string]bool{"/abs": true, "~/x": true, "~": false, "~/": false, "rel/x": false, "~root/x": false, `%LOCALAPPDATA%\S`: true} {
		if validManagedPath(p) != ok {
			t.Errorf("validManagedPath(%q) = %v", p, !ok)
		}
	}

	passwd := "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2::/bin:/usr/sbin/nologin\n" +
		"alice:x:1000:1000::/home/alice:/bin/bash\nalias:x:1001:1001::/home/alice/:/bin/bash\n" +
		"nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\nbad line\n"
	if homes := localHomes([]byte(passwd)); strings.Join(homes, ",") != "/root,/home/alice" {
		t.Fatalf("homes %v", homes)
	}
	users := t.TempDir()
	for _, d := range []string{"alice", "Public", ".hidden", "Shared"} {
		if err := os.Mkdir(filepath.Join(users, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(users, "desktop.ini"))
	if got := userFolders(users, "public", "Shared"); !slices.Equal(got, []string{filepath.Join(users, "alice")}) {
		t.Fatalf("userFolders %v", got)
	}
}

// A wipe with a path the agent refuses removes the others, reports every path with its outcome
// as partial, and keeps the agent's identity so that a new wipe can finish the job.
func TestPartialWipeReportsEveryPathAndKeepsRunning(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	root := t.TempDir()
	victim := filepath.Join(root, "alice", "data.db")
	mustWrite(t, victim)
	home := t.TempDir()
	appData := filepath.Join(home, ".local", "share", "securetext")
	mustWrite(t, filepath.Join(appData, "messages.db"))
	a := newAgent(t, store, (&counterCollector{}).collect, WithWipeRoots(root))
	a.homes = func() []string { return []string{home} } // a home outside the wipe roots, as root's is
	r := start(t, a)
	f.enqueue(id.DeviceID, Command{ID: "c_part", Type: "wipe", Mode: "selective",
		ManagedData: []string{victim, "/etc/passwd", "~/.local/share/securetext"}})
	eventually(t, 5*time.Second, "the result", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ok := f.results["c_part"]
		return ok
	})
	f.mu.Lock()
	res := f.results["c_part"]
	f.mu.Unlock()
	got, why := outcomes(res.Paths)
	if res.Status != "partial" || !slices.Equal(got, []string{victim + " removed", "/etc/passwd refused", appData + " removed"}) ||
		!strings.Contains(why["/etc/passwd"], "allowed root") || res.Paths[2].Managed != "~/.local/share/securetext" ||
		!strings.Contains(res.Detail, "1 refused") {
		t.Fatalf("result %+v", res)
	}
	for _, p := range []string{victim, appData} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived", p)
		}
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal("a refused path was removed")
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-r.done:
		t.Fatal("the agent stopped after a partial wipe")
	default:
	}
	if !store.Enrolled() {
		t.Fatal("the agent removed its identity after a partial wipe")
	}
}
