package localapi

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/Microsoft/go-winio"

	"github.com/halemdm/hale/agent/localproto"
)

// DefaultAddress is the named pipe's name.
func DefaultAddress() string { return `\\.\pipe\hale-agent` }

// Listen makes the named pipe at path with PipeSDDL as its security descriptor, so only
// interactive users (and SYSTEM and administrators) can connect and none can create another
// instance of it to pose as the agent.
func Listen(path string) (net.Listener, error) {
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: PipeSDDL, InputBufferSize: localproto.MaxLine, OutputBufferSize: localproto.MaxLine,
	})
	if err != nil {
		return nil, fmt.Errorf("localapi: %w", err)
	}
	return ln, nil
}

// CheckExecutable answers an allow-list entry as the OS reports a peer's executable: an
// absolute path with symlinks resolved. Whether users can replace it is the file system's ACL
// (Program Files is administrators' only); it is not checked here.
func CheckExecutable(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("localapi: the allowed executable %q must be an absolute path", path)
	}
	return filepath.EvalSymlinks(path)
}
