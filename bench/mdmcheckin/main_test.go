package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/halemdm/hale/internal/pgtest"
)

// TestRunBBolt runs the harness small on bbolt: every exchange must succeed and the sizes be
// taken. No timing is asserted; the figures belong to bench/run.
func TestRunBBolt(t *testing.T) {
	r, err := run("bbolt", options{devices: 4, rounds: 1, concurrency: 2, sizeRounds: 2, sized: true})
	if err != nil {
		t.Fatal(err)
	}
	// Each device: an Idle, the command's result, and the empty queue's answer at least.
	if r.Errors != 0 || r.Requests < 4*2 || r.SizeRounds != 2 {
		t.Fatalf("result %+v", r)
	}
	if r.BytesPerDevice <= 0 || r.LiveBytesPerDevice <= 0 || r.LiveBytesPerDevice > r.BytesPerDevice {
		t.Fatalf("sizes %+v", r)
	}
}

// TestRunPostgres runs both PostgreSQL backends small on the test cluster and checks that each
// dropped the database it made.
func TestRunPostgres(t *testing.T) {
	server := pgtest.ServerURL(t)
	for _, backend := range []string{"postgres", "nanomdm-pgsql"} {
		t.Run(backend, func(t *testing.T) {
			before := benchDatabases(t, server)
			r, err := run(backend, options{devices: 3, rounds: 1, concurrency: 2, sizeRounds: 2, sized: true, postgres: server})
			if err != nil {
				t.Fatal(err)
			}
			if r.Errors != 0 || r.Requests < 3*2 || r.SizeRounds != 2 || r.BytesPerDevice <= 0 || r.LiveBytesPerDevice <= 0 {
				t.Fatalf("result %+v", r)
			}
			if after := benchDatabases(t, server); after != before {
				t.Fatalf("bench databases: %d before, %d after", before, after)
			}
		})
	}
	if _, err := run("postgres", options{devices: 1, rounds: 1, concurrency: 1}); err == nil || !strings.Contains(err.Error(), "-postgres") {
		t.Fatalf("postgres without a URL: %v", err)
	}
}

// benchDatabases counts this harness's databases on the cluster; its prefixes are its own, since
// other packages' tests (bench/replicas) make and drop databases on the same cluster meanwhile.
func benchDatabases(t *testing.T, server string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE 'hale\_bench\_checkin\_%' OR datname LIKE 'nanomdm\_bench\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
