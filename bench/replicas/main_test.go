package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
)

// A small run on a real PostgreSQL server: every lock reaches the replica as a device_locked
// deny, both kinds of phase serve requests without errors, and the busy phases did write.
func TestSmallRun(t *testing.T) {
	cfg := config{Postgres: pgtest.ServerURL(t), Devices: 40, Enrollers: 4, Locks: 5, BusyLagLocks: 3, Action: "lock",
		Pollers: 2, Conns: 4, Rounds: 1, Duration: 500 * time.Millisecond, BusyLocks: 10, BusyReports: 20}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	r, err := run(io.Discard, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lag.N != 5 || r.Call.N != 5 || r.Lag.Maxms <= 0 || r.Lag.Maxms >= 10_000 {
		t.Errorf("lag %+v, call %+v", r.Lag, r.Call)
	}
	if r.BusyLag.N != 3 || r.BusyLagCall.N != 3 || r.BusyLagRepsPS <= 0 {
		t.Errorf("with reports flowing: lag %+v, call %+v, %v reports/s", r.BusyLag, r.BusyLagCall, r.BusyLagRepsPS)
	}
	if len(r.Phases) != 2 || r.Idle.Requests == 0 || r.Busy.Requests == 0 || r.Idle.Errors+r.Busy.Errors != 0 {
		t.Errorf("idle %+v, busy %+v", r.Idle, r.Busy)
	}
	if r.BusyLocksPS <= 0 || r.BusyRepsPS <= 0 {
		t.Errorf("the busy phases wrote nothing: %v locks/s, %v reports/s", r.BusyLocksPS, r.BusyRepsPS)
	}
	var b strings.Builder
	report(&b, r)
	if !strings.Contains(b.String(), "goal p99 < 1000 ms") || !strings.Contains(b.String(), "busy/idle: throughput") {
		t.Errorf("report:\n%s", b.String())
	}
}

// Flags that cannot make a meaningful run are refused before anything starts.
func TestConfigCheck(t *testing.T) {
	good := config{Postgres: "postgres://x/y", Devices: 2000, Enrollers: 8, Locks: 300, BusyLagLocks: 100, Action: "lock",
		Pollers: 4, Conns: 32, Rounds: 2, Duration: 5 * time.Second, BusyLocks: 20, BusyReports: 100}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*config){
		"no postgres":   func(c *config) { c.Postgres = "" },
		"bad action":    func(c *config) { c.Action = "erase" },
		"no locks":      func(c *config) { c.Locks = 0 },
		"negative busy": func(c *config) { c.BusyLagLocks = -1 },
		"too few":       func(c *config) { c.Devices = 600 },
		"no conns":      func(c *config) { c.Conns = 0 },
		"no busy write": func(c *config) { c.BusyLocks = 0 },
	} {
		c := good
		mod(&c)
		if err := c.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
