package localapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
//
// The PID could be reused between connect() and the reading of /proc (the connecting process
// exits and another takes its number). Where the kernel offers SO_PEERPIDFD (Linux 6.5 and
// later) the agent holds a pidfd of the very process that connected and checks it is still
// alive after reading /proc, which rules that out; on older kernels the window is only the
// microseconds between accept and the read, as the endpoint accepts at once.
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
	pidfd := -1
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if fd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd = fd
		}
	}); err != nil {
		return Peer{}, err
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	uid := strconv.FormatUint(uint64(cred.Uid), 10)
	p := Peer{PID: int(cred.Pid), UID: uid, User: userName(uid)}
	p.Executable = processExecutable(int(cred.Pid), cred.Uid)
	p.Tampered = tampered(int(cred.Pid))
	if pidfd >= 0 && unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		// The process that connected is gone: what /proc said may be another's.
		p.Executable = ""
	}
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

// tampered reads what the process started with (environ and cmdline, NUL-separated, at most
// 1 MiB each) and whether a debugger is attached (TracerPid), and says why it may run foreign
// code (injected), or "". What cannot be read counts as tampered: fail closed.
func tampered(pid int) string {
	dir := "/proc/" + strconv.Itoa(pid)
	env, err1 := readNULList(dir + "/environ")
	args, err2 := readNULList(dir + "/cmdline")
	status, err3 := os.ReadFile(dir + "/status")
	if err1 != nil || err2 != nil || err3 != nil {
		return "the agent cannot read how it was started"
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) != "0" {
			return "a debugger is attached to it"
		}
	}
	return injected(env, args)
}

// maxProcList bounds what is read of a process's environment or command line; a longer one is
// not judged, and so refused.
const maxProcList = 1 << 20

func readNULList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcList+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxProcList {
		return nil, errors.New(path + " is too long to judge")
	}
	var out []string
	for part := range bytes.SplitSeq(b, []byte{0}) {
		if len(part) > 0 {
			out = append(out, string(part))
		}
	}
	return out, nil
}
