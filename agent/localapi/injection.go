package localapi

import "strings"

// The allow list proves which program a process was started from, not that it runs only that
// program's code: a user can start an allowed app with a library preloaded into it, as a plain
// Node interpreter (Electron's ELECTRON_RUN_AS_NODE) or with a debugger port open, and so make it
// sign whatever key they like. The agent refuses a peer started that way, from what the OS shows
// of the process's initial environment and arguments (Linux: /proc/PID/environ, cmdline and the
// TracerPid in status; macOS: kern.procargs2). Apps should also switch these off themselves
// (Electron fuses RunAsNode and EnableNodeCliInspectArguments off; the hardened runtime on
// macOS); this check is what the agent can see without them.

// injectionEnv are environment variables that load foreign code into a process or turn it into
// something else.
var injectionEnv = []string{
	"LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", // the dynamic loader (Linux)
	"DYLD_INSERT_LIBRARIES", "DYLD_LIBRARY_PATH", "DYLD_FRAMEWORK_PATH", // dyld (macOS)
	"ELECTRON_RUN_AS_NODE", "NODE_OPTIONS", // Electron as a plain Node interpreter; --require
}

// injectionArgs are command-line flags (and their "=value" forms) that open a debugger on
// Electron or Chromium.
var injectionArgs = []string{"--inspect", "--inspect-brk", "--inspect-port", "--remote-debugging-port", "--remote-debugging-pipe"}

// injected names why a process started with env and args may run foreign code, or "".
func injected(env, args []string) string {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		for _, bad := range injectionEnv {
			if k == bad && v != "" {
				return "it was started with " + k + " set"
			}
		}
	}
	for i, a := range args {
		if i == 0 {
			continue // the program's own name
		}
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		for _, bad := range injectionArgs {
			if name == bad {
				return "it was started with " + bad
			}
		}
	}
	return ""
}
