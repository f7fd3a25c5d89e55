//go:build !windows

package agent

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// darwinSessions is the console user: the owner of /dev/console.
func darwinSessions() []Session {
	fi, err := os.Stat("/dev/console")
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil // the login window: nobody signed in
	}
	u, err := user.LookupId(strconv.Itoa(int(st.Uid)))
	if err != nil {
		return nil
	}
	return []Session{{UID: int(st.Uid), User: u.Username}}
}
