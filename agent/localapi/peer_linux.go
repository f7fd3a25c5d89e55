package localapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerOf answers who is at the other end of a Unix socket connection: the user and process
// from SO_PEERCRED (the kernel's record of the connect() call, not the peer's claim) and the
// executable from /proc/PID/exe. A process that no longer runs, whose PID now belongs to
// another user's process, or whose executable was deleted or replaced since it started, has
// no executable, which the allow list refuses.
func PeerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a Unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	uid := strconv.FormatUint(uint64(cred.Uid), 10)
	p := Peer{PID: int(cred.Pid), UID: uid, User: userName(uid)}
	p.Executable = processExecutable(int(cred.Pid), cred.Uid)
	return p, nil
}

// processExecutable is /proc/PID/exe's target, or "" when it cannot be trusted: the process
// is gone, /proc/PID is owned by another user than uid (the PID was reused), or the file was
// deleted or replaced (the kernel then appends " (deleted)").
func processExecutable(pid int, uid uint32) string {
	dir := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(dir + "/exe")
	if err != nil || strings.HasSuffix(exe, " (deleted)") {
		return ""
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
		return ""
	}
	return exe
}
