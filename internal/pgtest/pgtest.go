// Package pgtest gives a test its own empty PostgreSQL database on the real server that
// HALE_TEST_POSTGRES points at (a connection URL to a role that may create databases; .ci/run
// starts a throwaway cluster with .ci/postgres and sets it). Without it the test is skipped,
// except under CI (CI set), where it fails: a skip there would pass without testing anything.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable holding the server's connection URL.
const EnvURL = "HALE_TEST_POSTGRES"

// ServerURL returns the URL of the test server, or skips t (fails it under CI) when none is set.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI (.ci/run starts a cluster with .ci/postgres)", EnvURL)
		}
		t.Skipf("%s not set: start a cluster with `export %s=$(bash .ci/postgres start /tmp/hale-pg)`", EnvURL, EnvURL)
	}
	return u
}

// NewDatabase creates an empty database on the test server and returns its connection URL. It
// is dropped when the test ends, along with any connection still open to it.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name := "hale_test_" + randomSuffix(t)
	exec(t, server, "CREATE DATABASE "+name)
	t.Cleanup(func() { exec(t, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Exec runs one statement on the database at dsn, failing t on error.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	exec(t, dsn, sql, args...)
}

func exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Cluster is a PostgreSQL server of one test's own, which it may stop and restart without
// disturbing the tests sharing HALE_TEST_POSTGRES's server.
type Cluster struct {
	// URL connects to its postgres database.
	URL    string
	script string
	dir    string
}

// StartCluster starts a throwaway cluster with .ci/postgres (found above the working
// directory), stopped when the test ends. Like ServerURL it skips without PostgreSQL locally
// and fails under CI.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	ServerURL(t) // the same rule: skip locally without PostgreSQL, fail under CI
	script, err := findScript()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hale-pg-*")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{script: script, dir: dir}
	out, err := osexec.Command("bash", script, "start", dir).Output()
	if err != nil {
		t.Fatalf("pgtest: start a cluster: %v %s", err, exitOutput(err))
	}
	c.URL = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		_ = osexec.Command("bash", script, "stop", dir).Run()
		_ = os.RemoveAll(dir)
	})
	return c
}

// Restart stops the cluster (fast: clients are disconnected) and starts it again on the same
// port.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := osexec.Command("bash", c.script, "restart", c.dir).Run(); err != nil {
		t.Fatalf("pgtest: restart: %v %s", err, exitOutput(err))
	}
}

// findScript finds .ci/postgres in the working directory or above it (the module's root).
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, ".ci", "postgres")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("pgtest: .ci/postgres not found above the working directory")
		}
		dir = parent
	}
}

func exitOutput(err error) string {
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// sharedDB is the one database of this test process that NewSchema makes schemas in.
var sharedDB struct {
	sync.Mutex
	dsn string
}

// NewSchema returns the connection URL of an empty schema of its own, in a database this test
// process shares, as the first (and only) schema on the search path: what a test that opens
// many stores needs, as a schema costs a few milliseconds where a database costs a few hundred.
// Advisory locks and LISTEN channels are per database, so stores in two schemas share them: use
// NewDatabase for tests of leases and the change feed. The schema is dropped when the test ends.
func NewSchema(t testing.TB) string {
	t.Helper()
	// The lock is released by a defer: ServerURL skips (runtime.Goexit) without a server, and
	// a lock held past a skip hangs every later test of the process.
	base := func() string {
		sharedDB.Lock()
		defer sharedDB.Unlock()
		if sharedDB.dsn == "" {
			server := ServerURL(t)
			name := "hale_test_schemas_" + randomSuffix(t)
			exec(t, server, "CREATE DATABASE "+name)
			u, err := url.Parse(server)
			if err != nil {
				t.Fatalf("%s: %v", EnvURL, err)
			}
			u.Path = "/" + name
			sharedDB.dsn = u.String()
			// The database outlives this test (the next ones use it); it is dropped with the
			// cluster, or by hand: hale_test_schemas_*.
		}
		return sharedDB.dsn
	}()
	schema := "s_" + randomSuffix(t)
	exec(t, base, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, base, "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
