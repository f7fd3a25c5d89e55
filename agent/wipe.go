package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultWipeRoots are where managed data of a clinical app lives on each platform. A wipe
// never removes anything outside them, whatever the server asks; `mdmagent run --wipe-root`
// replaces them.
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

// wipeTarget is one validated path of a selective wipe.
type wipeTarget struct {
	path string // as the server sent it, cleaned
	root string // the allowed root it is under
	rel  string // path relative to root
}

// validManagedPath reports whether p is a path a policy may list: absolute, or "~/" followed by
// a path relative to each local user's home directory.
func validManagedPath(p string) bool {
	return !strings.ContainsRune(p, 0) && (filepath.IsAbs(p) || (strings.HasPrefix(p, "~/") && len(p) > 2))
}

// expandHomes replaces each "~/rel" path by rel under every home directory in homes that lies
// inside an allowed root (a home outside the roots is not the agent's to wipe); other paths are
// kept as they are.
func expandHomes(paths, homes, roots []string) []string {
	var out []string
	for _, p := range paths {
		rel, ok := strings.CutPrefix(p, "~/")
		if !ok {
			out = append(out, p)
			continue
		}
		for _, h := range homes {
			for _, r := range roots {
				if within(filepath.Clean(h), filepath.Clean(r)) {
					out = append(out, filepath.Join(h, rel))
					break
				}
			}
		}
	}
	return out
}

// localHomes returns the home directories of the local accounts in passwd (the contents of
// /etc/passwd): interactive users (uid >= 1000) and root.
func localHomes(passwd []byte) []string {
	var homes []string
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || !filepath.IsAbs(f[5]) {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || (uid != 0 && (uid < 1000 || uid == 65534)) {
			continue
		}
		homes = append(homes, filepath.Clean(f[5]))
	}
	return homes
}

// planWipe validates every path before anything is removed: a single bad path fails the whole
// command, so a wipe never half-runs on a hostile list. "~/" paths are expanded with homes.
func planWipe(paths, homes, roots []string, stateDir string) ([]wipeTarget, error) {
	if len(paths) == 0 {
		return nil, errors.New("the wipe command lists no managed data; set managed_data in the policy")
	}
	var out []wipeTarget
	for _, raw := range expandHomes(paths, homes, roots) {
		t, err := planOne(raw, roots, stateDir)
		if err != nil {
			return nil, fmt.Errorf("refusing to wipe %q: %w", raw, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func planOne(raw string, roots []string, stateDir string) (wipeTarget, error) {
	if strings.ContainsRune(raw, 0) || !filepath.IsAbs(raw) {
		return wipeTarget{}, errors.New("not an absolute path")
	}
	p := filepath.Clean(raw)
	if p == filepath.VolumeName(p)+string(filepath.Separator) {
		return wipeTarget{}, errors.New("it is a filesystem root")
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
		if stateDir != "" && (within(p, stateDir) || p == stateDir || within(stateDir, p)) {
			return wipeTarget{}, errors.New("it holds the agent's own state, which the agent removes itself")
		}
		if err := noSymlinkTraversal(r, rel); err != nil {
			return wipeTarget{}, err
		}
		return wipeTarget{path: p, root: r, rel: rel}, nil
	}
	return wipeTarget{}, fmt.Errorf("it is not strictly inside an allowed root (%s)", strings.Join(roots, ", "))
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
// step that would leave the allowed root (a symlink swapped in after planning included). It
// returns the paths that existed and are now gone; a path that is still there after removal is
// an error.
func doWipe(targets []wipeTarget) (removed []string, err error) {
	var errs []error
	for _, t := range targets {
		gone, e := removeUnder(t)
		if e != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.path, e))
			continue
		}
		if gone {
			removed = append(removed, t.path)
		}
	}
	return removed, errors.Join(errs...)
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
