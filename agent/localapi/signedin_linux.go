package localapi

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// sessionDir is where systemd-logind keeps its sessions (a variable for tests).
var sessionDir = "/run/systemd/sessions"

// SignedIn reports whether the peer's user has a local session at this computer: a
// systemd-logind session of its UID in state active or online that is not remote (SSH). A
// machine without logind has no signed-in users; name them with WithAllowedUsers.
func SignedIn(p Peer) bool {
	files, err := filepath.Glob(filepath.Join(sessionDir, "*"))
	if err != nil {
		return false
	}
	for _, f := range files {
		if s := readSession(f); s["UID"] == p.UID && s["REMOTE"] != "1" && (s["STATE"] == "active" || s["STATE"] == "online") {
			return true
		}
	}
	return false
}

// readSession reads a logind session file's KEY=VALUE lines (at most 64 KiB).
func readSession(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}
