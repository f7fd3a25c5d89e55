package localapi

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/windows"
)

// PeerOf answers who is at the other end of a named pipe connection: the client process from
// GetNamedPipeClientProcessId, its user from the process token (the SID, and the account name
// when it resolves) and its executable from QueryFullProcessImageName, all without cgo.
// Windows can also check the executable's Authenticode signature (WinVerifyTrust in
// wintrust.dll); that is not done here, and the allow list names paths, which under Program
// Files only administrators can replace.
func PeerOf(c net.Conn) (Peer, error) {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return Peer{}, errors.New("not a named pipe connection")
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(windows.Handle(f.Fd()), &pid); err != nil {
		return Peer{}, fmt.Errorf("GetNamedPipeClientProcessId: %w", err)
	}
	ph, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return Peer{}, fmt.Errorf("opening the client process: %w", err)
	}
	defer windows.CloseHandle(ph)
	var tok windows.Token
	if err := windows.OpenProcessToken(ph, windows.TOKEN_QUERY, &tok); err != nil {
		return Peer{}, fmt.Errorf("opening the client's token: %w", err)
	}
	defer tok.Close()
	tu, err := tok.GetTokenUser()
	if err != nil {
		return Peer{}, fmt.Errorf("reading the client's user: %w", err)
	}
	p := Peer{PID: int(pid), UID: tu.User.Sid.String()}
	p.User = p.UID
	if acct, dom, _, err := tu.User.Sid.LookupAccount(""); err == nil {
		p.User = dom + `\` + acct
	}
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(ph, 0, &buf[0], &n); err == nil {
		p.Executable = windows.UTF16ToString(buf[:n])
	}
	return p, nil
}
