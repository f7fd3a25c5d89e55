package collect

// DefaultCollectors returns the collectors for the running OS.
func DefaultCollectors() []Collector { return LinuxCollectors() }
