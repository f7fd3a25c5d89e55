package localapi

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// PeerOf answers who is at the other end of a Unix socket connection: the user from
// LOCAL_PEERCRED (getsockopt Xucred, the credentials the kernel recorded at connect()), the
// process from LOCAL_PEERPID, and its executable from the kern.procargs2 sysctl (what ps uses),
// all without cgo. macOS also offers the peer's audit token (LOCAL_PEERTOKEN) and the code
// signature through SecCodeCopyGuestWithAttributes; the latter is a Security framework call
// that needs cgo, so the signature is not checked here and the allow list names paths.
func PeerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a Unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var xu *unix.Xucred
	var pid int
	var cerr, perr error
	if err := raw.Control(func(fd uintptr) {
		xu, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		pid, perr = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("LOCAL_PEERCRED: %w", cerr)
	}
	uid := strconv.FormatUint(uint64(xu.Uid), 10)
	p := Peer{UID: uid, User: userName(uid)}
	if perr == nil && pid > 0 {
		p.PID = pid
		p.Executable, p.Tampered = procArgs(pid)
	}
	return p, nil
}

// procArgs reads the kern.procargs2 sysctl for pid: an int32 argc, the NUL-terminated path
// the process was executed by, NUL padding, the arguments and then the environment, each
// NUL-terminated (what ps -E shows). It answers the path with symlinks resolved ("" when it
// cannot be trusted) and why the process may run foreign code (injected), failing closed when
// the sysctl cannot be read or parsed.
func procArgs(pid int) (exe, tampered string) {
	b, err := unix.SysctlRaw("kern.procargs2", pid)
	if err != nil || len(b) < 5 {
		return "", "the agent cannot read how it was started"
	}
	path, rest, ok := bytes.Cut(b[4:], []byte{0})
	if !ok {
		return "", "the agent cannot read how it was started"
	}
	// Arguments and environment are not told apart here: argc cannot be trusted to split them
	// (an empty argv[0] is indistinguishable from the padding), so every string is judged both
	// as an argument and as a variable: a false alarm costs a token, a miss would give one away.
	var strs []string
	for part := range bytes.SplitSeq(rest, []byte{0}) {
		if len(part) > 0 {
			strs = append(strs, string(part))
		}
	}
	tampered = injected(strs, append([]string{""}, strs...))
	if len(path) == 0 || path[0] != '/' {
		return "", tampered // relative to a working directory the agent cannot know: refused
	}
	// The path the process was executed by; the allow list holds paths with symlinks resolved.
	real, err := filepath.EvalSymlinks(string(path))
	if err != nil {
		return "", tampered
	}
	return real, tampered
}
