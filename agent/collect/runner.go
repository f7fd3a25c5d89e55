package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Defaults of ExecRunner.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultMaxOutput      = 1 << 20
)

// Output is what an external tool wrote. Truncated is set when a stream exceeded the runner's
// bound; parsers that need the whole output must refuse it.
type Output struct {
	Stdout, Stderr []byte
	Truncated      bool
}

// ExitError is returned by a Runner for a tool that ran and exited non-zero. The Output returned
// alongside it is valid: some tools (firewall-cmd --state) answer through their exit status.
type ExitError struct {
	Path string
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("%s exited with status %d", e.Path, e.Code) }

// Runner runs an external tool. path must be absolute: collectors never search PATH, so a
// planted binary earlier in PATH cannot answer for the real tool. A missing tool is reported as
// an error that matches fs.ErrNotExist.
type Runner interface {
	Run(ctx context.Context, path string, args ...string) (Output, error)
}

// ExecRunner runs tools as child processes with a C locale (so output is parseable), a minimal
// environment, a timeout and bounded output. The zero value uses the defaults.
type ExecRunner struct {
	Timeout   time.Duration // per command; 0 means DefaultCommandTimeout
	MaxOutput int           // per stream, in bytes; 0 means DefaultMaxOutput
}

// Run implements Runner.
func (r *ExecRunner) Run(ctx context.Context, path string, args ...string) (Output, error) {
	if !filepath.IsAbs(path) {
		return Output{}, fmt.Errorf("run %q: tools must be named by absolute path", path)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	limit := r.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = commandEnv()
	// A grandchild holding the pipes open must not keep Run waiting past the kill.
	cmd.WaitDelay = time.Second
	stdout, stderr := &boundedBuffer{limit: limit}, &boundedBuffer{limit: limit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	out := Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Truncated: stdout.over || stderr.over}
	if ctx.Err() != nil {
		return out, fmt.Errorf("run %s: %w", path, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &ExitError{Path: path, Code: ee.ExitCode()}
	}
	if err != nil {
		return out, fmt.Errorf("run %s: %w", path, err)
	}
	return out, nil
}

// commandEnv is the environment of every tool: a C locale and a fixed PATH; on Windows the
// variables PowerShell cannot start without.
func commandEnv() []string {
	env := []string{"LANG=C", "LC_ALL=C"}
	if runtime.GOOS == "windows" {
		for _, k := range []string{"SystemRoot", "windir", "SystemDrive", "ProgramFiles", "PSModulePath"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		return env
	}
	return append(env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
}

// boundedBuffer keeps the first limit bytes written and discards the rest, so a runaway tool
// cannot exhaust the agent's memory. The buffer is a field, not embedded, so that io.Copy cannot
// bypass Write through bytes.Buffer's ReadFrom.
type boundedBuffer struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

// Bytes returns what was kept.
func (b *boundedBuffer) Bytes() []byte { return b.buf.Bytes() }
