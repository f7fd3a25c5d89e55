//go:build linux || darwin

package localapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// DefaultAddress is the socket's path: in the agent's runtime directory, which the systemd unit
// creates (RuntimeDirectory=) and launchd leaves to the agent.
func DefaultAddress() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/hale-agent/agent.sock"
	}
	return "/run/hale-agent/agent.sock"
}

// Socket and directory modes. Any local user may connect (the socket is 0666 and its directory
// 0755): who gets a token is decided per connection from the peer's credentials, not by who
// can open the socket. Only the agent's user may create, remove or replace anything there.
const (
	SocketMode = 0o666
	DirMode    = 0o755
)

// Listen makes the Unix socket at path. Its directory is created 0755 if missing, and must be
// a real directory owned by the agent's user and writable by nobody else, or another user
// could have put a socket of their own in its place. A stale socket left by an earlier run is
// removed; any other file there is an error.
func Listen(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("localapi: the socket path %q must be absolute", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return nil, fmt.Errorf("localapi: %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("localapi: %s is not owned by the agent's user", dir)
	case fi.Mode().Perm()&0o022 != 0:
		// Ours, created with a loose umask or mode: tighten it rather than refuse.
		if err := os.Chmod(dir, DirMode); err != nil {
			return nil, fmt.Errorf("localapi: %w", err)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("localapi: %s exists and is not a socket; not removing it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("localapi: removing the stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("localapi: %w", err)
	}
	return ln, nil
}

// CheckExecutable refuses an allow-list entry that a user could replace with another program:
// it must be an absolute path to a regular file owned by root (or the agent's user) and
// writable by neither group nor others, and so must every directory above it. It answers the
// path with symlinks resolved, as the OS reports a peer's executable.
func CheckExecutable(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("localapi: the allowed executable %q must be an absolute path", path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("localapi: the allowed executable: %w", err)
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("localapi: the allowed executable: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || (st.Uid != 0 && int(st.Uid) != os.Geteuid()) || (fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0) {
			return "", fmt.Errorf("localapi: %s (for the allowed executable %s) is owned by another user or writable by others", p, path)
		}
		if p == real && !fi.Mode().IsRegular() {
			return "", fmt.Errorf("localapi: the allowed executable %s is not a regular file", path)
		}
		if p == filepath.Dir(p) {
			return real, nil
		}
	}
}
