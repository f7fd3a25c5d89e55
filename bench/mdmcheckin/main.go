// Command mdmcheckin measures Apple MDM check-in throughput and latency of a real Hale server
// over HTTPS, with nanomdm on Hale's bbolt store and, in the same run, on nanomdm's own diskv and
// in-memory backends.
//
// N simulated devices (internal/applesim, speaking the real protocol with Mdm-Signature) enroll
// (Authenticate, TokenUpdate), then run R rounds: a SecurityInfo command is queued for every
// device, and each device checks in (Idle), runs the command and reports its result until its
// queue is empty. Every MDM request is timed on the client.
//
//	go run ./bench/mdmcheckin -devices 1000 -rounds 3
package main

import (
	"bytes"
	"context"
	"crypto/tls"
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
)

func main() {
	devices := flag.Int("devices", 1000, "simulated devices")
	rounds := flag.Int("rounds", 3, "command rounds after enrollment")
	concurrency := flag.Int("concurrency", 64, "devices talking at once")
	backends := flag.String("backends", "bbolt,diskv,inmem", "nanomdm storage backends to compare")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	var results []result
	for _, name := range strings.Split(*backends, ",") {
		r, err := run(name, *devices, *rounds, *concurrency)
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

func run(backend string, n, rounds, concurrency int) (result, error) {
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

	var mdmStore storage.AllStorage
	var opts []mdmserver.Option
	switch backend {
	case "bbolt":
	case "diskv":
		mdmStore = diskv.New(filepath.Join(dir, "diskv"))
	case "inmem":
		mdmStore = inmem.New()
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
	cfg := mdmserver.Defaults()
	cfg.Listen, cfg.DataDir, cfg.MDMCAFile, cfg.APNsURL = ln.Addr().String(), filepath.Join(dir, "data"), caFile, apns.URL()
	opts = append(opts, mdmserver.WithLogger(slog.New(slog.DiscardHandler)), mdmserver.WithAPNsRootCAs(apns.CertPool()))
	srv, err := mdmserver.New(cfg, opts...)
	if err != nil {
		return result{}, err
	}
	defer srv.Close()
	if mdmStore == nil {
		// Commands are queued as the server queues them: sealed under its master key.
		key, err := seal.LoadOrCreate(filepath.Join(cfg.DataDir, "master.key"))
		if err != nil {
			return result{}, err
		}
		bolt, ok := srv.Store().(*boltstore.Store)
		if !ok {
			return result{}, fmt.Errorf("queueing commands needs the bbolt store, not %T", srv.Store())
		}
		if mdmStore, err = boltstore.NewMDMStorage(bolt, boltstore.WithCommandSealer(key)); err != nil {
			return result{}, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	url := "https://" + ln.Addr().String() + "/mdm"

	tm := &timing{next: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: srv.RootCAs(), ClientSessionCache: tls.NewLRUClientSessionCache(n)},
		MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency,
	}}
	client := &http.Client{Transport: tm, Timeout: time.Minute}
	devs := make([]*applesim.Device, n)
	for i := range devs {
		cert, key := ca.Issue(tb, fmt.Sprintf("bench-%d", i))
		if devs[i], err = applesim.New(url, applesim.WithHTTPClient(client), applesim.WithIdentity(cert, key)); err != nil {
			return result{}, err
		}
	}

	start := time.Now()
	if err := each(devs, concurrency, func(d *applesim.Device) error { return d.Enroll(ctx) }); err != nil {
		return result{}, fmt.Errorf("enroll: %w", err)
	}
	enrollRate := float64(n) / time.Since(start).Seconds()

	ids := make([]string, n)
	for i, d := range devs {
		ids[i] = d.UDID()
	}
	tm.reset()
	var total time.Duration
	for r := 0; r < rounds; r++ {
		if err := enqueue(ctx, mdmStore, ids); err != nil {
			return result{}, err
		}
		start := time.Now()
		err := each(devs, concurrency, func(d *applesim.Device) error {
			_, err := d.Poll(ctx)
			return err
		})
		total += time.Since(start)
		if err != nil {
			return result{}, fmt.Errorf("round %d: %w", r, err)
		}
	}
	tm.mu.Lock()
	lat := slices.Clone(tm.lat)
	tm.mu.Unlock()
	slices.Sort(lat)
	return result{
		Backend: backend, Devices: n, Requests: int64(len(lat)), Errors: tm.errs.Load(),
		Seconds: total.Seconds(), PerSecond: float64(len(lat)) / total.Seconds(),
		P50ms: measure.Millis(measure.Percentile(lat, 0.50)), P99ms: measure.Millis(measure.Percentile(lat, 0.99)), EnrollPerSec: enrollRate,
	}, nil
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
	fmt.Fprintf(w, "%-7s %8s %9s %7s %12s %9s %9s %12s\n", "backend", "devices", "requests", "errors", "checkins/s", "p50 ms", "p99 ms", "enrolls/s")
	for _, r := range rs {
		fmt.Fprintf(w, "%-7s %8d %9d %7d %12.0f %9.2f %9.2f %12.0f\n", r.Backend, r.Devices, r.Requests, r.Errors, r.PerSecond, r.P50ms, r.P99ms, r.EnrollPerSec)
	}
	base := map[string]result{}
	for _, r := range rs {
		base[r.Backend] = r
	}
	if b, ok := base["bbolt"]; ok {
		for _, other := range []string{"diskv", "inmem"} {
			if o, ok := base[other]; ok {
				fmt.Fprintf(w, "bbolt/%s: throughput %.2fx, p50 %.2fx, p99 %.2fx\n", other,
					b.PerSecond/o.PerSecond, b.P50ms/o.P50ms, b.P99ms/o.P99ms)
			}
		}
	}
}
