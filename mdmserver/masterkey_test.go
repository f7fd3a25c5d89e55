package mdmserver_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
)

// A data directory whose master.key went missing is refused with an error that names the key
// and the other ways to give it, and nothing is written: a new key could open none of the
// sealed data. Given the key another way, the same directory starts.
func TestMissingMasterKeyRefusesToStart(t *testing.T) {
	env := newTestEnv(t)
	env.Stop()
	keyPath := filepath.Join(env.Config.DataDir, "master.key")
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	before := dirTree(t, env.Config.DataDir)

	srv, err := mdmserver.New(env.Config, mdmserver.WithLogger(servertest.Logger()))
	if err == nil {
		srv.Close()
		t.Fatal("the server started without its master key")
	}
	for _, want := range []string{"master key", keyPath, "HALE_MASTER_KEY", "master_key_file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(keyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a master key file exists after the refused start: %v", err)
	}
	if after := dirTree(t, env.Config.DataDir); !slices.Equal(before, after) {
		t.Errorf("the refused start changed the data directory:\nbefore %q\nafter  %q", before, after)
	}

	cfg := env.Config
	cfg.MasterKeyFile = filepath.Join(t.TempDir(), "kept.key")
	if err := os.WriteFile(cfg.MasterKeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err = mdmserver.New(cfg, mdmserver.WithLogger(servertest.Logger()))
	if err != nil {
		t.Fatalf("start with master_key_file: %v", err)
	}
	srv.Close()
	if _, err := os.Stat(keyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a start with master_key_file wrote %s: %v", keyPath, err)
	}
}

// dirTree lists every path under dir with its size and modification time, sorted.
func dirTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, fmt.Sprintf("%s %v %d %s", rel, info.Mode(), info.Size(), info.ModTime()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
