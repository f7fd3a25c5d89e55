// Command replicas measures Hale's access replicas on PostgreSQL (issue 14): a primary and an
// access replica, in process, on one fresh database, with a fleet of agent devices enrolled and
// reporting compliant through the primary's agent API.
//
//   - Latency: devices are locked (or wiped) on the primary one after another; for each, the time
//     from the primary's 202 to the first deny from the replica's access API, seen by several
//     pollers asking the replica in a tight loop. Baseline: the lock call's own round trip, how
//     soon the security officer hears back. Goal: p99 < 1 s.
//   - Throughput: GET /access/v1/devices/{id} on the replica from many keep-alive clients asking
//     for random devices of the fleet, with the primary idle (the baseline) and with the primary
//     taking a paced stream of locks and agent reports, whose changes the replica follows from
//     the change feed meanwhile. Phases alternate (idle, busy, idle, busy) so drift in a shared
//     machine's load falls on both alike. The ratio is busy / idle.
//
// Both servers, the clients and PostgreSQL share this machine's cores, so the busy phases also
// pay for the primary's own work; on separate machines the replica would not.
//
//	go run ./bench/replicas -postgres "$HALE_TEST_POSTGRES" [-devices 2000] [-locks 300] [-json FILE]
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/halemdm/hale/bench/internal/fleet"
	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/posture"
)

var tb = measure.Harness{Name: "replicas"}

// goalLag is the goal for a lock on the primary to reach a replica, at p99.
const goalLag = time.Second

func main() {
	var cfg config
	flag.StringVar(&cfg.Postgres, "postgres", os.Getenv("HALE_TEST_POSTGRES"), "PostgreSQL URL of a role that may create databases (default $HALE_TEST_POSTGRES); the run creates its own database and drops it")
	flag.IntVar(&cfg.Devices, "devices", 2000, "agent devices enrolled and reporting compliant")
	flag.IntVar(&cfg.Enrollers, "enrollers", 8, "devices enrolling at once")
	flag.IntVar(&cfg.Locks, "locks", 300, "devices locked one after another for the latency")
	flag.IntVar(&cfg.BusyLagLocks, "busy-lag-locks", 100, "devices locked one after another while the primary takes the busy report stream (0: none)")
	flag.StringVar(&cfg.Action, "action", "lock", "what the primary does to a device: lock or wipe (selective)")
	flag.IntVar(&cfg.Pollers, "pollers", 4, "clients polling the replica for each device's deny")
	flag.IntVar(&cfg.Conns, "conns", 32, "keep-alive clients on the replica's access API for the throughput")
	flag.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each throughput phase")
	flag.IntVar(&cfg.Rounds, "rounds", 2, "idle+busy phase pairs")
	flag.Float64Var(&cfg.BusyLocks, "busy-locks", 20, "locks (or wipes) per second on the primary during busy phases")
	flag.Float64Var(&cfg.BusyReports, "busy-reports", 100, "agent posture reports per second on the primary during busy phases")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()
	if err := cfg.check(); err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(2)
	}
	r, err := run(os.Stdout, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replicas:", err)
		os.Exit(1)
	}
	report(os.Stdout, r)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "replicas:", err)
			os.Exit(1)
		}
	}
}

// config is one run's shape.
type config struct {
	Postgres                  string
	Devices, Enrollers, Locks int
	BusyLagLocks              int
	Action                    string
	Pollers, Conns, Rounds    int
	Duration                  time.Duration
	BusyLocks, BusyReports    float64
}

func (c config) check() error {
	switch {
	case c.Postgres == "":
		return errors.New("no PostgreSQL: pass -postgres URL or set HALE_TEST_POSTGRES (bash .ci/postgres start DIR prints one)")
	case c.Action != "lock" && c.Action != "wipe":
		return fmt.Errorf("-action %q: want lock or wipe", c.Action)
	case c.Locks < 1:
		return errors.New("-locks must be at least 1")
	case c.BusyLagLocks < 0:
		return errors.New("-busy-lag-locks must not be negative")
	case c.Devices < c.Locks+c.BusyLagLocks+c.busyVictims()+10:
		return fmt.Errorf("-devices %d: want at least %d (-locks, -busy-lag-locks, the busy phases' %d actions, 10 reporting)",
			c.Devices, c.Locks+c.BusyLagLocks+c.busyVictims()+10, c.busyVictims())
	case c.Enrollers < 1 || c.Pollers < 1 || c.Conns < 1 || c.Rounds < 1 || c.Duration <= 0:
		return errors.New("-enrollers, -pollers, -conns, -rounds and -duration must be positive")
	case c.BusyLocks <= 0 || c.BusyReports <= 0:
		return errors.New("-busy-locks and -busy-reports must be positive: a busy phase needs writes")
	}
	return nil
}

// busyVictims is how many devices the busy phases may act on at most (a tick or two of slack
// per phase).
func (c config) busyVictims() int {
	return c.Rounds * (int(math.Ceil(c.BusyLocks*c.Duration.Seconds())) + 2)
}

// result is everything a run measured; bench/summary reads its JSON.
type result struct {
	Devices    int     `json:"devices"`
	Action     string  `json:"action"`
	Pollers    int     `json:"pollers"`
	Conns      int     `json:"conns"`
	EnrollSecs float64 `json:"enroll_seconds"`
	Lag        lag     `json:"lag"`  // action on the primary (its 202) to deny on the replica
	Call       lag     `json:"call"` // the action call's own round trip (baseline)
	// AskToDeny is from the moment the action is asked for to the replica's deny: the call
	// plus the lag, what the security officer waits for end to end.
	AskToDeny     lag     `json:"ask_to_deny"`
	BusyAskToDeny lag     `json:"busy_ask_to_deny"`
	Phases        []phase `json:"phases"`
	Idle          phase   `json:"idle"` // every idle phase merged
	Busy          phase   `json:"busy"` // every busy phase merged
	BusyLocksPS   float64 `json:"busy_locks_per_second"`
	BusyRepsPS    float64 `json:"busy_reports_per_second"`
	// BusyLag and BusyLagCall are Lag and Call again with the primary taking the busy report
	// stream meanwhile (BusyLagRepsPS achieved).
	BusyLag       lag     `json:"busy_lag"`
	BusyLagCall   lag     `json:"busy_lag_call"`
	BusyLagRepsPS float64 `json:"busy_lag_reports_per_second"`
	// BusyCall is the actions' round trips during the busy phases: how the primary kept up.
	BusyCall lag `json:"busy_call"`
	// The rates asked for; the achieved ones above fall short when the primary cannot keep up.
	AskedLocksPS float64 `json:"asked_locks_per_second"`
	AskedRepsPS  float64 `json:"asked_reports_per_second"`
}

// lag is a latency distribution in milliseconds.
type lag struct {
	N     int     `json:"samples"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`
}

func lagOf(d []time.Duration) lag {
	s := measure.Summarize(d) // sorts d
	return lag{N: s.N, P50ms: measure.Millis(s.P50), P90ms: measure.Millis(measure.Percentile(d, 0.90)),
		P99ms: measure.Millis(s.P99), Maxms: measure.Millis(s.Max)}
}

// sums is a[i]+b[i] for each i.
func sums(a, b []time.Duration) []time.Duration {
	s := make([]time.Duration, len(a))
	for i := range a {
		s[i] = a[i] + b[i]
	}
	return s
}

// node is one running server.
type node struct {
	srv    *mdmserver.Server
	url    string
	data   string
	stop   context.CancelFunc
	served chan error
}

func (n *node) close() {
	n.stop()
	<-n.served
	_ = n.srv.Close()
}

// start builds a server from cfg and serves it on a free loopback port.
func start(cfg mdmserver.Config) (*node, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg.Listen = ln.Addr().String()
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{srv: srv, url: "https://" + cfg.Listen, data: cfg.DataDir, stop: cancel, served: make(chan error, 1)}
	go func() { n.served <- srv.Serve(ctx, ln) }()
	return n, nil
}

func run(log io.Writer, cfg config) (result, error) {
	r := result{Devices: cfg.Devices, Action: cfg.Action, Pollers: cfg.Pollers, Conns: cfg.Conns,
		AskedLocksPS: cfg.BusyLocks, AskedRepsPS: cfg.BusyReports}
	dir, err := os.MkdirTemp("", "hale-bench-replicas")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	dsn, drop, err := createDatabase(cfg.Postgres)
	if err != nil {
		return r, err
	}
	defer drop()

	pc := mdmserver.Defaults()
	pc.DataDir, pc.Database = filepath.Join(dir, "primary"), dsn
	pc.EnrollRate, pc.EnrollBurst = float64(cfg.Devices), cfg.Devices // every device enrolls from this one address
	primary, err := start(pc)
	if err != nil {
		return r, fmt.Errorf("primary: %w", err)
	}
	defer primary.close()
	roots := primary.srv.RootCAs()
	admin, err := os.ReadFile(primary.srv.AdminTokenPath())
	if err != nil {
		return r, err
	}
	p := &fleet.Server{URL: primary.url, Roots: roots, TB: tb, Client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 64}}}
	adminToken := string(admin[:len(admin)-1])
	it, security, access := p.Token(adminToken, "it"), p.Token(adminToken, "security"), p.Token(adminToken, "access")
	p.Call("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 1h\n", nil)
	p.Call("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, nil)

	// The replica runs on a copy of the primary's data directory (its CA and master key), as a
	// second machine would hold it, and follows the fleet's enrollment through the change feed.
	rdata := filepath.Join(dir, "replica")
	if out, err := exec.Command("cp", "-a", primary.data, rdata).CombinedOutput(); err != nil {
		return r, fmt.Errorf("copy the data directory: %v %s", err, out)
	}
	rc := mdmserver.Defaults()
	rc.DataDir, rc.Database, rc.Role = rdata, dsn, mdmserver.RoleAccess
	replica, err := start(rc)
	if err != nil {
		return r, fmt.Errorf("replica: %w", err)
	}
	defer replica.close()
	ask := newAsker(replica.url, access, roots, max(cfg.Conns, cfg.Pollers))

	t0 := time.Now()
	agents := enroll(p, it, cfg.Devices, cfg.Enrollers)
	r.EnrollSecs = time.Since(t0).Seconds()
	ids := make([]string, len(agents))
	for i, a := range agents {
		ids[i] = a.ID
	}
	if err := ask.waitAllowed(ids, 30*time.Second); err != nil {
		return r, err
	}
	fmt.Fprintf(log, "%d agent devices enrolled and compliant in %.1f s, all allowed on the replica\n", len(ids), r.EnrollSecs)

	act := newActor(p, security, cfg.Action)
	calls, lags, err := measureLag(act, ask, ids[:cfg.Locks], cfg.Pollers)
	if err != nil {
		return r, err
	}
	r.AskToDeny = lagOf(sums(calls, lags))
	r.Call, r.Lag = lagOf(calls), lagOf(lags)
	fmt.Fprintf(log, "%d devices: %s on the primary, then polled on the replica by %d clients until denied\n", cfg.Locks, cfg.Action, cfg.Pollers)

	// The busy passes act on devices of their own and take reports from the rest, still active.
	l := cfg.Locks + cfg.BusyLagLocks
	v := l + cfg.busyVictims()
	if cfg.BusyLagLocks > 0 {
		reports := &busyLoad{reporters: agents[v:], reportsPS: cfg.BusyReports}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		t1 := time.Now()
		go func() { errc <- reports.run(ctx) }()
		// The reports flow before the first lock: at a small size the locks alone take
		// milliseconds, less than the pace's first interval.
		for reports.reports.Load() == 0 && time.Since(t1) < 30*time.Second {
			time.Sleep(time.Millisecond)
		}
		calls, lags, err := measureLag(act, ask, ids[cfg.Locks:l], cfg.Pollers)
		cancel()
		if rerr := <-errc; err == nil {
			err = rerr
		}
		if err != nil {
			return r, err
		}
		r.BusyAskToDeny = lagOf(sums(calls, lags))
		r.BusyLagCall, r.BusyLag = lagOf(calls), lagOf(lags)
		r.BusyLagRepsPS = float64(reports.reports.Load()) / time.Since(t1).Seconds()
		fmt.Fprintf(log, "%d devices: the same with the primary taking agent reports meanwhile\n", cfg.BusyLagLocks)
	}
	busy := &busyLoad{act: act, victims: ids[l:v], reporters: agents[v:],
		locksPS: cfg.BusyLocks, reportsPS: cfg.BusyReports}
	if err := throughput(&r, ask, ids, busy, cfg); err != nil {
		return r, err
	}
	return r, nil
}

// createDatabase creates an empty database on the server at serverURL and returns its URL and
// a function that drops it (with any connection still open to it).
func createDatabase(serverURL string) (dsn string, drop func(), err error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("-postgres: %w", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "hale_bench_replicas_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE DATABASE " + name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u.Path = "/" + name
	return u.String(), func() {
		if err := exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "replicas: drop database", name+":", err)
		}
	}, nil
}

// enroll enrolls n compliant agents, workers at a time.
func enroll(p *fleet.Server, it string, n, workers int) []*fleet.Agent {
	agents := make([]*fleet.Agent, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				agents[i] = p.EnrollCompliant(it)
			}
		})
	}
	for i := range agents {
		next <- i
	}
	close(next)
	wg.Wait()
	return agents
}

// deniedCode is the reason a replica must give for a device the action was taken on.
func deniedCode(action string) string {
	if action == "wipe" {
		return posture.ReasonWipePending
	}
	return posture.ReasonLocked
}
