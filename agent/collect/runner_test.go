package collect

import (
	"context"
	"errors"
	"io/fs"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestExecRunner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses /bin/sh")
	}
	ctx := context.Background()
	r := &ExecRunner{Timeout: 5 * time.Second, MaxOutput: 1000}

	out, err := r.Run(ctx, "/bin/sh", "-c", `echo "$LANG $LC_ALL"; echo err >&2`)
	if err != nil || string(out.Stdout) != "C C\n" || string(out.Stderr) != "err\n" {
		t.Errorf("env/streams: %q %q %v", out.Stdout, out.Stderr, err)
	}
	if _, err := r.Run(ctx, "sh", "-c", "true"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative tool path: %v", err)
	}
	if _, err := r.Run(ctx, "/nonexistent/tool"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing tool: %v", err)
	}
	_, err = r.Run(ctx, "/bin/sh", "-c", "exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Errorf("exit status: %v", err)
	}
	out, err = r.Run(ctx, "/bin/sh", "-c", "i=0; while [ $i -lt 500 ]; do echo 0123456789; i=$((i+1)); done")
	if err != nil || !out.Truncated || len(out.Stdout) != 1000 {
		t.Errorf("bounded output: %d bytes, truncated %v, %v", len(out.Stdout), out.Truncated, err)
	}
	fast := &ExecRunner{Timeout: 100 * time.Millisecond}
	start := time.Now()
	if _, err := fast.Run(ctx, "/bin/sh", "-c", "sleep 30"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed-out tool held Run for %v", d)
	}
}
