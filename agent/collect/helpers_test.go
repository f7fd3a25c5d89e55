package collect

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/halemdm/hale/internal/fixturetree"
)

// fakeRunner answers tool invocations from recorded outputs, keyed by the full command line.
// A command it does not know is "not installed".
type fakeRunner struct {
	mu    sync.Mutex
	cmds  map[string]fakeRun
	calls []string
}

type fakeRun struct {
	out Output
	err error
}

func (f *fakeRunner) Run(_ context.Context, path string, args ...string) (Output, error) {
	line := strings.Join(append([]string{path}, args...), " ")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, line)
	r, ok := f.cmds[line]
	if !ok {
		return Output{}, &fs.PathError{Op: "fork/exec", Path: path, Err: fs.ErrNotExist}
	}
	return r.out, r.err
}

// tool reads a recorded tool output from testdata/tools.
func tool(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tools", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seeds adds every recorded output of a tool to a fuzz corpus.
func seeds(f *testing.F, dir string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "tools", dir, "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in %s: %v", dir, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// rootSeeds adds a file from every fixture root to a fuzz corpus.
func rootSeeds(f *testing.F, name string) {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "roots", "*", name))
	if len(files) == 0 {
		f.Fatalf("no fixture has %s", name)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// fixtureRoot copies testdata/roots/NAME to a temporary directory and recreates the symlinks
// listed in testdata/roots/NAME.symlinks (the tree itself holds only regular files, so it
// survives Go module zips and checkouts on any OS).
func fixtureRoot(t testing.TB, name string) string {
	t.Helper()
	return fixturetree.Copy(t, filepath.Join("testdata", "roots", name), filepath.Join(t.TempDir(), name))
}
