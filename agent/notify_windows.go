package agent

// darwinSessions has no meaning on Windows: msg.exe reaches every session itself.
func darwinSessions() []Session { return nil }
