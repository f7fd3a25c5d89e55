package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/halemdm/hale/agent/state"
)

// DefaultWipeRoots are where managed data of a clinical app lives outside users' homes on each
// platform. A wipe never removes an absolute path outside them, whatever the server asks;
// `mdmagent run --wipe-root` replaces them. A policy's "~/" paths are removed in every local
// user's home instead (see wipeHomeRelative).
func DefaultWipeRoots(goos string) []string {
	switch goos {
	case "darwin":
		return []string{"/Users", "/Library/Application Support", "/opt"}
	case "windows":
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return []string{`C:\Users`, pd}
	default:
		return []string{"/home", "/opt", "/srv", "/var/opt"}
	}
}

// wipeTarget is one path of a selective wipe, with the directory its removal is confined to or
// the reason the agent will not touch it.
type wipeTarget struct {
	managed string // the policy's entry it came from
	path    string // absolute, cleaned
	root    string // the directory removal is confined to: a wipe root, or a user's home
	rel     string // path relative to root
	refused string // why the agent will not remove it; "" when it will
}

// validManagedPath reports whether p is a path a policy may list: absolute, or relative to each
// local user's home directory ("~/x", or on Windows "~\x", "%LOCALAPPDATA%\x", ...).
func validManagedPath(p string) bool {
	if strings.ContainsRune(p, 0) {
		return false
	}
	rel, home := homeRelative(p)
	return filepath.IsAbs(p) || (home && rel != "")
}

// windowsHomeVars are the per-user folders a Windows policy may start a path with, as folders
// of the user's profile.
var windowsHomeVars = []struct{ prefix, sub string }{
	{`%USERPROFILE%\`, ""},
	{`%LOCALAPPDATA%\`, `AppData\Local\`},
	{`%APPDATA%\`, `AppData\Roaming\`},
}

// homeRelative returns the part of p below a user's home directory when p names one ("~/x",
// "~\x", "%LOCALAPPDATA%\x", ...), with either separator turned into the platform's.
func homeRelative(p string) (rel string, ok bool) {
	switch {
	case strings.HasPrefix(p, "~/"), strings.HasPrefix(p, `~\`):
		rel, ok = p[2:], true
	default:
		for _, v := range windowsHomeVars {
			if len(p) > len(v.prefix) && strings.EqualFold(p[:len(v.prefix)], v.prefix) {
				rel, ok = v.sub+p[len(v.prefix):], true
				break
			}
		}
	}
	if !ok {
		return "", false
	}
	return filepath.FromSlash(strings.ReplaceAll(rel, `\`, "/")), true
}

// planWipe decides, for every managed path, what the agent will remove and what it refuses and
// why. Each path is judged on its own: a refused path is reported and leaves the others to be
// removed, since every path that is removed was checked by itself (inside a wipe root or a
// user's home, no symbolic link on the way, not the agent's state). "~/" paths expand to one
// target per home in homes (every local user, root included); absolute paths must lie inside
// roots.
func planWipe(paths, homes, roots []string, stateDir string) ([]wipeTarget, error) {
	if len(paths) == 0 {
		return nil, errors.New("the wipe command lists no managed data; set managed_data in the policy")
	}
	var out []wipeTarget
	seen := map[string]bool{}
	add := func(t wipeTarget) {
		if t.refused != "" || !seen[t.path] {
			seen[t.path] = true
			out = append(out, t)
		}
	}
	for _, raw := range paths {
		if strings.ContainsRune(raw, 0) {
			add(wipeTarget{managed: raw, path: raw, refused: "not a path (it contains a NUL byte)"})
			continue
		}
		if rel, ok := homeRelative(raw); ok {
			for _, t := range planHome(raw, rel, homes, stateDir) {
				add(t)
			}
			continue
		}
		add(planAbsolute(raw, roots, stateDir))
	}
	return out, nil
}

// planHome expands one home-relative path in every home.
func planHome(raw, rel string, homes []string, stateDir string) []wipeTarget {
	rel = filepath.Clean(rel)
	switch {
	case !filepath.IsLocal(rel):
		return []wipeTarget{{managed: raw, path: raw, refused: "it leaves the home directory"}}
	case rel == ".":
		return []wipeTarget{{managed: raw, path: raw, refused: "it is a whole home directory"}}
	case len(homes) == 0:
		return []wipeTarget{{managed: raw, path: raw, refused: "no local user's home directory was found to expand it in"}}
	}
	var out []wipeTarget
	for _, h := range homes {
		h = filepath.Clean(h)
		t := wipeTarget{managed: raw, path: filepath.Join(h, rel), root: h, rel: rel}
		switch {
		case !filepath.IsAbs(h) || h == filepath.VolumeName(h)+string(filepath.Separator):
			t.refused = "the home directory " + h + " is a filesystem root or not absolute"
		case holdsState(t.path, stateDir):
			t.refused = "it holds the agent's own state, which the agent removes itself"
		default:
			if err := noSymlinkTraversal(h, rel); err != nil {
				t.refused = err.Error()
			}
		}
		out = append(out, t)
	}
	return out
}

// planAbsolute places an absolute path under the wipe root it is strictly inside.
func planAbsolute(raw string, roots []string, stateDir string) wipeTarget {
	t := wipeTarget{managed: raw, path: raw}
	if !filepath.IsAbs(raw) {
		t.refused = "not an absolute path"
		return t
	}
	p := filepath.Clean(raw)
	t.path = p
	if p == filepath.VolumeName(p)+string(filepath.Separator) {
		t.refused = "it is a filesystem root"
		return t
	}
	for _, r := range roots {
		r = filepath.Clean(r)
		if !within(p, r) {
			continue
		}
		rel, err := filepath.Rel(r, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		if holdsState(p, stateDir) {
			t.refused = "it holds the agent's own state, which the agent removes itself"
		} else if err := noSymlinkTraversal(r, rel); err != nil {
			t.refused = err.Error()
		} else {
			t.root, t.rel = r, rel
		}
		return t
	}
	t.refused = fmt.Sprintf("it is not strictly inside an allowed root (%s; add one with mdmagent run --wipe-root)", strings.Join(roots, ", "))
	return t
}

// holdsState reports whether removing p would touch the agent's state directory.
func holdsState(p, stateDir string) bool {
	return stateDir != "" && (within(p, stateDir) || p == stateDir || within(stateDir, p))
}

// within reports whether p is strictly inside dir (lexically).
func within(p, dir string) bool {
	dir = strings.TrimRight(dir, string(filepath.Separator))
	return strings.HasPrefix(p, dir+string(filepath.Separator)) && len(p) > len(dir)+1
}

// noSymlinkTraversal refuses a path whose parent directories include a symlink: the server
// names paths, and a symlink planted by a user must not redirect the wipe elsewhere. The last
// element may be a symlink; then only the link is removed.
func noSymlinkTraversal(root, rel string) error {
	parts := strings.Split(rel, string(filepath.Separator))
	cur := root
	for _, part := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing below exists, nothing to remove
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link; a wipe does not follow links", cur)
		}
		if !fi.IsDir() {
			return nil
		}
	}
	return nil
}

// doWipe removes the planned paths through os.Root, which refuses at the system-call level any
// step that would leave the target's root (a symlink swapped in after planning included), and
// returns every target's outcome in order. A path still there after removal failed.
func doWipe(targets []wipeTarget) []state.PathResult {
	out := make([]state.PathResult, 0, len(targets))
	for _, t := range targets {
		r := state.PathResult{Path: t.path}
		if t.managed != t.path {
			r.Managed = t.managed
		}
		if t.refused != "" {
			r.Outcome, r.Reason = state.OutcomeRefused, t.refused
			out = append(out, r)
			continue
		}
		existed, err := removeUnder(t)
		switch {
		case err != nil:
			r.Outcome, r.Reason = state.OutcomeFailed, err.Error()
		case existed:
			r.Outcome = state.OutcomeRemoved
		default:
			r.Outcome = state.OutcomeAbsent
		}
		out = append(out, r)
	}
	return out
}

func removeUnder(t wipeTarget) (existed bool, err error) {
	root, err := os.OpenRoot(t.root)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	if _, err := root.Lstat(t.rel); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := root.RemoveAll(t.rel); err != nil {
		return true, err
	}
	if _, err := root.Lstat(t.rel); !errors.Is(err, fs.ErrNotExist) {
		return true, fmt.Errorf("still present after removal (%v)", err)
	}
	return true, nil
}

// Bounds on a wipe result, below what the server accepts (1 MiB, 4096 paths).
const (
	maxResultPaths = 1024
	maxResultBytes = 512 << 10
	maxReasonLen   = 512
)

// wipeResult turns the outcomes into the command's result: done when nothing was refused or
// failed, otherwise partial. The list is bounded: beyond the bounds, absent paths are left out
// first, then removed ones, and the detail says how many.
func wipeResult(paths []state.PathResult) *state.Result {
	count := map[string]int{}
	var removed []string
	for i := range paths {
		count[paths[i].Outcome]++
		if paths[i].Outcome == state.OutcomeRemoved {
			removed = append(removed, paths[i].Path)
		}
		if len(paths[i].Reason) > maxReasonLen {
			paths[i].Reason = paths[i].Reason[:maxReasonLen]
		}
	}
	kept, omitted := boundPaths(paths)
	res := &state.Result{Status: state.StatusDone, Paths: kept}
	if omitted == 0 {
		res.Removed = removed
	}
	summary := fmt.Sprintf("%d removed, %d absent, %d refused, %d failed of %d managed data paths",
		count[state.OutcomeRemoved], count[state.OutcomeAbsent], count[state.OutcomeRefused], count[state.OutcomeFailed], len(paths))
	if omitted > 0 {
		summary += fmt.Sprintf(" (%d not listed here)", omitted)
	}
	if count[state.OutcomeRefused]+count[state.OutcomeFailed] == 0 {
		res.Detail = "selective wipe done: " + summary + "; the agent removed its key and state and stopped reporting"
		return res
	}
	res.Status = state.StatusPartial
	res.Detail = "selective wipe incomplete: " + summary + "; managed data is left on the device. " +
		"The agent keeps its identity so that a new wipe can finish the job"
	return res
}

// boundPaths keeps the outcomes within maxResultPaths and maxResultBytes, dropping absent
// paths first, then removed ones, then the last of the rest: what was left behind is what the
// operator must see first.
func boundPaths(paths []state.PathResult) (kept []state.PathResult, omitted int) {
	size := func(p state.PathResult) int { b, _ := json.Marshal(p); return len(b) + 1 }
	total := 0
	for _, p := range paths {
		total += size(p)
	}
	over := func() bool { return len(paths)-omitted > maxResultPaths || total > maxResultBytes }
	kept = paths
	for _, drop := range []string{state.OutcomeAbsent, state.OutcomeRemoved} {
		if !over() {
			return kept, omitted
		}
		var next []state.PathResult
		for _, p := range kept {
			if p.Outcome == drop && over() {
				omitted++
				total -= size(p)
				continue
			}
			next = append(next, p)
		}
		kept = next
	}
	for len(kept) > 0 && over() {
		omitted++
		total -= size(kept[len(kept)-1])
		kept = kept[:len(kept)-1]
	}
	return kept, omitted
}
