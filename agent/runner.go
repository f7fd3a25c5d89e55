package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Runner runs an external program and returns its combined output.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs programs as child processes with bounded output and a 30 s limit.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out limitedBuffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// limitedBuffer keeps the first 8 KiB written to it: enough for an error message.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8<<10 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// defaultLockCommand is the command line that locks every user session on goos.
func defaultLockCommand(goos string) []string {
	switch goos {
	case "darwin":
		const cgs = "/System/Library/CoreServices/Menu Extras/User.menu/Contents/Resources/CGSession"
		if _, err := os.Stat(cgs); err == nil {
			return []string{cgs, "-suspend"}
		}
		return []string{"/usr/bin/pmset", "displaysleepnow"}
	case "windows":
		return []string{`C:\Windows\System32\rundll32.exe`, "user32.dll,LockWorkStation"}
	default:
		return []string{"/usr/bin/loginctl", "lock-sessions"}
	}
}

// lock runs the lock command.
func (a *Agent) lock(ctx context.Context) (status, detail string) {
	if len(a.lockArgv) == 0 {
		return "failed", "no lock command is configured for this platform"
	}
	out, err := a.runner.Run(ctx, a.lockArgv[0], a.lockArgv[1:]...)
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 512 {
			msg = msg[:512]
		}
		return "failed", fmt.Sprintf("%s failed: %v %s", strings.Join(a.lockArgv, " "), err, msg)
	}
	return "done", "locked sessions with " + strings.Join(a.lockArgv, " ")
}
