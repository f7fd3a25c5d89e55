package collect

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// MaxFileSize bounds every file a collector reads; posture sources are small text files, and a
// larger one is treated as hostile.
const MaxFileSize = 1 << 20

// maxSymlinks bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinks = 40

// Env is what a collector may touch: a filesystem root, a runner for external tools, a clock and
// the agent's own paths. The zero value inspects the running machine. Root redirects file reads
// only: external tools always describe the machine the agent runs on.
type Env struct {
	// Root is the directory that stands for "/" in every path a collector reads. Empty means "/".
	Root string
	// Runner runs external tools. Nil means an ExecRunner with its defaults.
	Runner Runner
	// Now stamps claims. Nil means time.Now.
	Now func() time.Time
	// AgentBinary and AgentConfig are checked for tampering; AgentBinary defaults to the running
	// executable. They are host paths, not resolved inside Root.
	AgentBinary, AgentConfig string
	// StateDir is the agent's state directory (host path).
	StateDir string
}

func (e Env) withDefaults() *Env {
	if e.Root == "" {
		e.Root = "/"
	}
	if e.Runner == nil {
		e.Runner = &ExecRunner{}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.AgentBinary == "" {
		if exe, err := os.Executable(); err == nil {
			e.AgentBinary = exe
		}
	}
	return &e
}

// ErrOutsideRoot is returned for a path that is not absolute.
var ErrOutsideRoot = errors.New("path must be absolute (it is resolved inside the collection root)")

// HostPath resolves the absolute slash-separated name inside Root, following symlinks the way the
// kernel would if Root were "/": absolute link targets restart at Root and ".." never climbs
// above it. The result is a host path. The final component is followed too.
func (e *Env) HostPath(name string) (string, error) {
	return e.resolve(name, true)
}

func (e *Env) root() string {
	if e.Root == "" {
		return "/"
	}
	return e.Root
}

func (e *Env) resolve(name string, followLast bool) (string, error) {
	if !path.IsAbs(name) {
		return "", fmt.Errorf("%q: %w", name, ErrOutsideRoot)
	}
	root := e.root()
	if root == "/" {
		// The host's own resolution is the same walk, and far cheaper.
		return path.Clean(name), nil
	}
	done := "/" // resolved prefix, inside root, with no symlinks
	rest := strings.Split(strings.TrimPrefix(path.Clean(name), "/"), "/")
	links := 0
	for len(rest) > 0 {
		comp := rest[0]
		rest = rest[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done) // path.Dir("/") is "/": never above root
			continue
		}
		next := path.Join(done, comp)
		if len(rest) == 0 && !followLast {
			done = next
			break
		}
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Nothing to follow; the caller's open reports the missing file.
				done = path.Join(append([]string{next}, rest...)...)
				rest = nil
				break
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", name)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		target = filepath.ToSlash(target)
		if path.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, filepath.FromSlash(done)), nil
}

// ReadFile reads the named file inside Root, refusing files larger than MaxFileSize.
func (e *Env) ReadFile(name string) ([]byte, error) {
	return e.readFileLimit(name, MaxFileSize)
}

func (e *Env) readFileLimit(name string, limit int64) ([]byte, error) {
	p, err := e.HostPath(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes; refusing to parse it", name, limit)
	}
	return b, nil
}

// ReadDir lists the named directory inside Root.
func (e *Env) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := e.HostPath(name)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(p)
}

// Stat returns information about the named file inside Root, following symlinks.
func (e *Env) Stat(name string) (fs.FileInfo, error) {
	p, err := e.HostPath(name)
	if err != nil {
		return nil, err
	}
	return os.Stat(p)
}

// Exists reports whether the named file exists inside Root. Errors other than "does not exist"
// are returned so that a permission problem is not mistaken for absence.
func (e *Env) Exists(name string) (bool, error) {
	_, err := e.Stat(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// Realpath resolves every symlink in name inside Root and returns the resulting absolute path as
// seen from Root (not a host path).
func (e *Env) Realpath(name string) (string, error) {
	p, err := e.HostPath(name)
	if err != nil {
		return "", err
	}
	root := e.root()
	if root == "/" {
		r, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", err
		}
		return filepath.ToSlash(r), nil
	}
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s resolves outside the collection root", name)
	}
	return path.Join("/", filepath.ToSlash(rel)), nil
}
