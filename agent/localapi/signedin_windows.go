package localapi

import "golang.org/x/sys/windows"

// SignedIn reports whether the peer process runs in the active console session (the user
// signed in at the computer).
func SignedIn(p Peer) bool {
	var s uint32
	if p.PID <= 0 || windows.ProcessIdToSessionId(uint32(p.PID), &s) != nil {
		return false
	}
	return s == windows.WTSGetActiveConsoleSessionId()
}
