//go:build !linux && !darwin && !windows

package localapi

import (
	"errors"
	"net"
)

// DefaultAddress is empty: the local endpoint is not supported on this OS.
func DefaultAddress() string { return "" }

// Listen is unsupported on this OS.
func Listen(string) (net.Listener, error) {
	return nil, errors.New("localapi: the local endpoint is not supported on this OS")
}

// CheckExecutable is unsupported on this OS.
func CheckExecutable(string) (string, error) {
	return "", errors.New("localapi: the local endpoint is not supported on this OS")
}
