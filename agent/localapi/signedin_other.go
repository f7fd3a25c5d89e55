//go:build !linux && !darwin && !windows

package localapi

// SignedIn knows no signed-in users on this OS.
func SignedIn(Peer) bool { return false }
