package localapi

import (
	"os"
	"strconv"
	"syscall"
)

// SignedIn reports whether the peer's user is the one signed in at the console: macOS gives
// /dev/console to the user of the login window session.
func SignedIn(p Peer) bool {
	fi, err := os.Stat("/dev/console")
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid != 0 && strconv.FormatUint(uint64(st.Uid), 10) == p.UID
}
