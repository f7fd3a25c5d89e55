//go:build !windows

package desktop

import (
	"context"
	"net"
	"runtime"
)

// DefaultAddress is where the agent listens: its socket (agent/localapi.DefaultAddress).
func DefaultAddress() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/hale-agent/agent.sock"
	}
	return "/run/hale-agent/agent.sock"
}

func dialAgent(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}
