// Package pgtest gives a test its own empty PostgreSQL database on the real server that
// HALE_TEST_POSTGRES points at (a connection URL to a role that may create databases; .ci/run
// starts a throwaway cluster with .ci/postgres and sets it). Without it the test is skipped,
// except under CI (CI set), where it fails: a skip there would pass without testing anything.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
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
