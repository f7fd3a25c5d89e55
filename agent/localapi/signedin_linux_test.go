package localapi

import (
	"os"
	"path/filepath"
	"testing"
)

// SignedIn (Linux) reads logind's sessions: a local session of the UID, active or online,
// counts; a remote (SSH) one, a closing one or another UID's does not.
func TestSignedInLogind(t *testing.T) {
	dir := t.TempDir()
	old := sessionDir
	sessionDir = dir
	t.Cleanup(func() { sessionDir = old })
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1", "# This is private data. Do not parse.\nUID=1000\nUSER=alice\nACTIVE=1\nSTATE=active\nREMOTE=0\nTYPE=wayland\n")
	write("2", "UID=1001\nUSER=bob\nSTATE=active\nREMOTE=1\nTYPE=tty\n")
	write("3", "UID=1002\nUSER=carol\nSTATE=closing\nREMOTE=0\n")
	write("4", "UID=1003\nUSER=dan\nSTATE=online\n")
	for uid, want := range map[string]bool{"1000": true, "1001": false, "1002": false, "1003": true, "0": false, "": false} {
		if got := SignedIn(Peer{UID: uid}); got != want {
			t.Errorf("uid %q signed in: %v, want %v", uid, got, want)
		}
	}
}
