//go:build !linux && !darwin && !windows

package collect

// DefaultCollectors returns the collectors for the running OS: none here, so every claim is
// unknown.
func DefaultCollectors() []Collector { return nil }
