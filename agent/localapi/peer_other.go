//go:build !linux && !darwin && !windows

package localapi

import (
	"errors"
	"net"
)

// PeerOf is unsupported here: this OS's peer credentials are not implemented, so every
// connection is refused (peer_unknown).
func PeerOf(net.Conn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are not supported on this OS")
}
