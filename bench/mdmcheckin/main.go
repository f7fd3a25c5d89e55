// Command mdmcheckin measures Apple MDM check-in throughput and latency of a real Hale server
// over HTTPS, with nanomdm on Hale's bbolt store and, in the same run, on nanomdm's own diskv and
// in-memory backends; with -postgres, also Hale with all its state in PostgreSQL ("postgres")
// next to the same server on nanomdm's own storage/pgsql ("nanomdm-pgsql"), each on a fresh
// database it creates on that cluster and drops after; and two Hale servers on one database,
// the devices split between them ("postgres-2").
//
// N simulated devices (internal/applesim, speaking the real protocol with Mdm-Signature) enroll
// (Authenticate, TokenUpdate), then run R rounds: a SecurityInfo command is queued for every
// device, and each device checks in (Idle), runs the command and reports its result until its
// queue is empty. Every MDM request is timed on the client. For the backends in -size-backends
// the devices then carry on, untimed, to -size-rounds rounds in all, and the database size per
// device is taken: on disk as the run left it, and live data only (see result).
//
//	go run ./bench/mdmcheckin -devices 1000 -rounds 3
//	go run ./bench/mdmcheckin -backends postgres,nanomdm-pgsql -postgres postgres://postgres@127.0.0.1:5432/postgres
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/diskv"
	"github.com/micromdm/nanomdm/storage/inmem"
	"github.com/micromdm/plist"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

func main() {
	devices := flag.Int("devices", 1000, "simulated devices")
	rounds := flag.Int("rounds", 3, "command rounds after enrollment")
	concurrency := flag.Int("concurrency", 64, "devices talking at once")
	backends := flag.String("backends", "bbolt,diskv,inmem", "storage backends to compare: bbolt, diskv, inmem, postgres, postgres-2, nanomdm-pgsql")
	postgres := flag.String("postgres", "", "PostgreSQL cluster URL (a role that may create databases) for the postgres and nanomdm-pgsql backends")
	sizeRounds := flag.Int("size-rounds", 10, "rounds in all (timed, then untimed) before the database size per device is taken; 0: not taken")
	sizeBackends := flag.String("size-backends", "bbolt,postgres", "backends whose database size is taken: bbolt, postgres, nanomdm-pgsql")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	sized := strings.Split(*sizeBackends, ",")
	for _, b := range sized {
		if b != "bbolt" && b != "postgres" && b != "nanomdm-pgsql" {
			fmt.Fprintf(os.Stderr, "mdmcheckin: -size-backends: no size is taken on %q\n", b)
			os.Exit(2)
		}
	}
	var results []result
	for _, name := range strings.Split(*backends, ",") {
		r, err := run(name, options{devices: *devices, rounds: *rounds, concurrency: *concurrency,
			sizeRounds: *sizeRounds, sized: slices.Contains(sized, name), postgres: *postgres})
		if err != nil {
			fmt.Fprintf(os.Stderr, "mdmcheckin: %s: %v\n", name, err)
			os.Exit(1)
		}
		results = append(results, r)
	}
	report(os.Stdout, results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

type result struct {
	Backend      string  `json:"backend"`
	Devices      int     `json:"devices"`
	Requests     int64   `json:"requests"`
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"checkins_per_second"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	EnrollPerSec float64 `json:"enrollments_per_second"`
	// SizeRounds is how many rounds the devices had run when the sizes were taken (0: not taken).
	SizeRounds int `json:"size_rounds,omitempty"`
	// BytesPerDevice is the database's size on disk per device: hale.db's file size on bbolt
	// (which grows in steps, doubling up to 1 GiB, and never shrinks); on PostgreSQL
	// pg_database_size as the run left it, dead rows included, minus the live size before the
	// first device.
	BytesPerDevice float64 `json:"bytes_per_device,omitempty"`
	// LiveBytesPerDevice counts live data only, what the devices added: on bbolt the pages
	// below the high-water mark not on the freelist; on PostgreSQL the size of Hale's or
	// nanomdm's tables with their indexes and TOAST after VACUUM FULL (system catalogs left out);
	// each minus the same measure taken with the server started and no device yet (the database
	// migrated, the CA and the server's own records written).
	LiveBytesPerDevice float64 `json:"live_bytes_per_device,omitempty"`
}

// timing wraps a transport and records each request's latency.
type timing struct {
	next http.RoundTripper
	mu   sync.Mutex
	lat  []time.Duration
	errs atomic.Int64
}

func (t *timing) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.errs.Add(1)
	}
	if err == nil {
		// Read the body so the latency includes it, as the device's own exchange does.
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	d := time.Since(start)
	t.mu.Lock()
	t.lat = append(t.lat, d)
	t.mu.Unlock()
	return resp, err
}

func (t *timing) reset() {
	t.mu.Lock()
	t.lat = t.lat[:0]
	t.mu.Unlock()
	t.errs.Store(0)
}

// options are the flags every backend's run shares.
type options struct {
	devices, rounds, concurrency int
	// sizeRounds is how many rounds in all (timed, then untimed) the devices run before the
	// database size is taken; 0 leaves it out.
	sizeRounds int
	sized      bool   // whether this backend's database size is taken
	postgres   string // the cluster's URL, for the PostgreSQL backends
}

func run(backend string, o options) (res result, err error) {
	n := o.devices
	dir, err := os.MkdirTemp("", "hale-bench-"+backend)
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	tb := measure.Harness{Name: "mdmcheckin"}
	ca := testpki.NewCA(tb, "bench device CA")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		return result{}, err
	}
	apns := fakeapns.New()
	defer apns.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg := mdmserver.Defaults()
	var mdmStore storage.AllStorage
	var opts []mdmserver.Option
	var pg *database // the database whose size is taken, on PostgreSQL
	switch backend {
	case "bbolt":
	case "diskv":
		mdmStore = diskv.New(filepath.Join(dir, "diskv"))
	case "inmem":
		mdmStore = inmem.New()
	case "postgres", "postgres-2", "nanomdm-pgsql":
		if o.postgres == "" {
			return result{}, fmt.Errorf("backend %s needs -postgres URL", backend)
		}
		if backend != "nanomdm-pgsql" {
			pg, err = newDatabase(ctx, o.postgres, "hale_bench_checkin")
			if err != nil {
				return result{}, err
			}
			cfg.Database = pg.url
		} else {
			var db *sql.DB
			pg, db, mdmStore, err = nanoPostgres(ctx, o.postgres)
			if err != nil {
				return result{}, err
			}
			defer db.Close()
		}
		defer func() {
			if derr := pg.drop(); derr != nil && err == nil {
				err = fmt.Errorf("drop %s: %w", pg.name, derr)
			}
		}()
	default:
		return result{}, fmt.Errorf("unknown backend %q", backend)
	}
	if mdmStore != nil {
		opts = append(opts, mdmserver.WithMDMStorage(mdmStore))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	cfg.Listen, cfg.DataDir, cfg.MDMCAFile, cfg.APNsURL = ln.Addr().String(), filepath.Join(dir, "data"), caFile, apns.URL()
	opts = append(opts, mdmserver.WithLogger(slog.New(slog.DiscardHandler)), mdmserver.WithAPNsRootCAs(apns.CertPool()))
	srv, err := mdmserver.New(cfg, opts...)
	if err != nil {
		ln.Close()
		return result{}, err
	}
	// stop stops serving and closes the server (its store with it) once; the sizes are taken
	// after it, on files and tables nothing writes to any more.
	served := make(chan error, 1)
	serving := false
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		if serving {
			<-served
		} else {
			ln.Close()
		}
		return srv.Close()
	}
	defer stop()
	if mdmStore == nil {
		if mdmStore, err = commandQueue(srv, cfg.DataDir); err != nil {
			return result{}, err
		}
	}
	// The sizes count what the devices add: each store's live data is taken once more here,
	// the server started (migrated, its CA and own records written) and no device yet.
	sized := o.sized && o.sizeRounds > 0 && (backend == "bbolt" || pg != nil)
	var boltStart int64
	if sized && pg != nil {
		if pg.empty, err = pg.size(ctx); err != nil {
			return result{}, fmt.Errorf("database size before the devices: %w", err)
		}
	} else if sized {
		if boltStart, err = boltLive(ctx, srv); err != nil {
			return result{}, err
		}
	}
	serving = true
	go func() { served <- srv.Serve(ctx, ln) }()
	urls := []string{"https://" + ln.Addr().String() + "/mdm"}
	if backend == "postgres-2" {
		second, stopSecond, err := startSecond(ctx, cfg, opts)
		if err != nil {
			return result{}, fmt.Errorf("second server: %w", err)
		}
		defer stopSecond()
		urls = append(urls, second)
	}

	tm := &timing{next: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: srv.RootCAs(), ClientSessionCache: tls.NewLRUClientSessionCache(n)},
		MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: o.concurrency,
	}}
	client := &http.Client{Transport: tm, Timeout: time.Minute}
	devs := make([]*applesim.Device, n)
	for i := range devs {
		cert, key := ca.Issue(tb, fmt.Sprintf("bench-%d", i))
		if devs[i], err = applesim.New(urls[i%len(urls)], applesim.WithHTTPClient(client), applesim.WithIdentity(cert, key)); err != nil {
			return result{}, err
		}
	}

	start := time.Now()
	if err := each(devs, o.concurrency, func(d *applesim.Device) error { return d.Enroll(ctx) }); err != nil {
		return result{}, fmt.Errorf("enroll: %w", err)
	}
	enrollRate := float64(n) / time.Since(start).Seconds()

	ids := make([]string, n)
	for i, d := range devs {
		ids[i] = d.UDID()
	}
	round := func(r int) error {
		if err := enqueue(ctx, mdmStore, ids); err != nil {
			return err
		}
		err := each(devs, o.concurrency, func(d *applesim.Device) error {
			_, err := d.Poll(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		return nil
	}
	tm.reset()
	var total time.Duration
	for r := 0; r < o.rounds; r++ {
		start := time.Now()
		err := round(r)
		total += time.Since(start)
		if err != nil {
			return result{}, err
		}
	}
	tm.mu.Lock()
	lat := slices.Clone(tm.lat)
	tm.mu.Unlock()
	slices.Sort(lat)
	res = result{
		Backend: backend, Devices: n, Requests: int64(len(lat)), Errors: tm.errs.Load(),
		Seconds: total.Seconds(), PerSecond: float64(len(lat)) / total.Seconds(),
		P50ms: measure.Millis(measure.Percentile(lat, 0.50)), P99ms: measure.Millis(measure.Percentile(lat, 0.99)), EnrollPerSec: enrollRate,
	}

	if !sized {
		return res, nil
	}
	// The rounds the size is taken after, untimed beyond the measured ones.
	for r := o.rounds; r < o.sizeRounds; r++ {
		if err := round(r); err != nil {
			return result{}, err
		}
	}
	res.SizeRounds = max(o.rounds, o.sizeRounds)
	if pg == nil {
		live, err := boltLive(ctx, srv)
		if err != nil {
			return result{}, err
		}
		if err := stop(); err != nil {
			return result{}, fmt.Errorf("close: %w", err)
		}
		fi, err := os.Stat(filepath.Join(cfg.DataDir, "hale.db"))
		if err != nil {
			return result{}, err
		}
		res.BytesPerDevice, res.LiveBytesPerDevice = float64(fi.Size())/float64(n), float64(live-boltStart)/float64(n)
		return res, nil
	}
	if err := stop(); err != nil {
		return result{}, fmt.Errorf("close: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer scancel()
	sz, err := pg.size(sctx)
	if err != nil {
		return result{}, fmt.Errorf("database size: %w", err)
	}
	res.BytesPerDevice, res.LiveBytesPerDevice = float64(sz.raw-pg.empty.compact)/float64(n), float64(sz.live-pg.empty.live)/float64(n)
	return res, nil
}

// boltLive returns the bytes of the server's hale.db that hold data: the pages below the
// high-water mark (what a snapshot, or a backup, copies) minus those on the freelist.
func boltLive(ctx context.Context, srv *mdmserver.Server) (int64, error) {
	bolt, ok := srv.Store().(*boltstore.Store)
	if !ok {
		return 0, fmt.Errorf("bbolt size: the store is %T", srv.Store())
	}
	var used int64
	err := bolt.Snapshot(ctx, func(size int64, _ func(io.Writer) (int64, error)) error {
		used = size
		return nil
	})
	if err != nil {
		return 0, err
	}
	return used - int64(bolt.DB().Stats().FreeAlloc), nil
}

// commandQueue returns an MDM storage on the server's own store to queue commands through as
// the server queues them: sealed under its master key, in bbolt or in PostgreSQL.
func commandQueue(srv *mdmserver.Server, dataDir string) (storage.AllStorage, error) {
	key, err := seal.LoadOrCreate(filepath.Join(dataDir, "master.key"))
	if err != nil {
		return nil, err
	}
	switch st := srv.Store().(type) {
	case *boltstore.Store:
		return boltstore.NewMDMStorage(st, boltstore.WithCommandSealer(key))
	case *pgstore.Store:
		return pgmdm.New(stdlib.OpenDBFromPool(st.Pool()), pgmdm.WithCommandSealer(key))
	default:
		return nil, fmt.Errorf("queueing commands needs the bbolt or PostgreSQL store, not %T", srv.Store())
	}
}

func enqueue(ctx context.Context, st storage.CommandEnqueuer, ids []string) error {
	uuid := fmt.Sprintf("BENCH-%d", time.Now().UnixNano())
	raw, err := plist.Marshal(map[string]any{"CommandUUID": uuid, "Command": map[string]any{"RequestType": "SecurityInfo"}})
	if err != nil {
		return err
	}
	cmd := &mdm.Command{CommandUUID: uuid, Raw: raw}
	cmd.Command.RequestType = "SecurityInfo"
	errs, err := st.EnqueueCommand(ctx, ids, cmd)
	if err == nil && len(errs) > 0 {
		for _, e := range errs {
			return e
		}
	}
	return err
}

// each runs fn for every device, at most c at once, and returns the first error.
func each(devs []*applesim.Device, c int, fn func(*applesim.Device) error) error {
	var (
		wg    sync.WaitGroup
		first atomic.Value
		next  atomic.Int64
	)
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(devs)); i = next.Add(1) - 1 {
				if err := fn(devs[i]); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

func report(w io.Writer, rs []result) {
	fmt.Fprintf(w, "%-13s %8s %9s %7s %12s %9s %9s %12s %10s %10s\n", "backend", "devices", "requests", "errors", "checkins/s", "p50 ms", "p99 ms", "enrolls/s", "disk B/dev", "live B/dev")
	for _, r := range rs {
		disk, live := "—", "—"
		if r.SizeRounds > 0 {
			disk, live = fmt.Sprintf("%.0f", r.BytesPerDevice), fmt.Sprintf("%.0f", r.LiveBytesPerDevice)
		}
		fmt.Fprintf(w, "%-13s %8d %9d %7d %12.0f %9.2f %9.2f %12.0f %10s %10s\n", r.Backend, r.Devices, r.Requests, r.Errors, r.PerSecond, r.P50ms, r.P99ms, r.EnrollPerSec, disk, live)
	}
	base := map[string]result{}
	for _, r := range rs {
		base[r.Backend] = r
	}
	ratios := func(ours, other string) {
		o, ok1 := base[ours]
		b, ok2 := base[other]
		if ok1 && ok2 {
			fmt.Fprintf(w, "%s/%s: throughput %.2fx, p50 %.2fx, p99 %.2fx\n", ours, other,
				o.PerSecond/b.PerSecond, o.P50ms/b.P50ms, o.P99ms/b.P99ms)
		}
	}
	ratios("bbolt", "diskv")
	ratios("bbolt", "inmem")
	ratios("postgres", "nanomdm-pgsql")
	ratios("postgres-2", "postgres")
	for _, r := range rs {
		if r.SizeRounds == 0 {
			continue
		}
		switch r.Backend {
		case "bbolt":
			fmt.Fprintf(w, "size per device after %d rounds, bbolt: hale.db file %.1f KB; pages in use %.1f KB over those before the first device\n",
				r.SizeRounds, r.BytesPerDevice/1000, r.LiveBytesPerDevice/1000)
		case "postgres":
			fmt.Fprintf(w, "size per device after %d rounds, postgres: %.1f KB as left; %.1f KB after VACUUM FULL; both over the database before the first device\n",
				r.SizeRounds, r.BytesPerDevice/1000, r.LiveBytesPerDevice/1000)
		default:
			fmt.Fprintf(w, "size per device after %d rounds, %s: %.1f KB as left; %.1f KB after VACUUM FULL; both over the database before the first device, nanomdm's tables only\n",
				r.SizeRounds, r.Backend, r.BytesPerDevice/1000, r.LiveBytesPerDevice/1000)
		}
	}
}
