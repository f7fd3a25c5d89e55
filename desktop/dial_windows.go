package desktop

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
)

// DefaultAddress is the agent's named pipe (agent/localapi.DefaultAddress).
func DefaultAddress() string { return `\\.\pipe\hale-agent` }

func dialAgent(ctx context.Context, addr string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, addr)
}
