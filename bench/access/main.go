// Command access measures the hot path of Hale's access API over HTTPS: GET
// /access/v1/devices/{id} against a large decision index and, on the same server in the same run,
// a minimal handler that writes a constant body of the same size.
//
// One HTTPS server is built the way mdmserver builds its own: a server certificate from the
// embedded CA (a real certs.Authority in a temporary directory), TLS 1.2 or later with client
// certificates requested, the httpmw middleware with metrics, and tokens.Require in the access
// role on both routes, so the only difference between the routes is the handler. Keep-alive
// HTTP/1.1 clients with a bearer token ask for random device IDs. The phases alternate
// (baseline, access, baseline, access) so drift in a shared machine's load falls on both alike,
// and each starts right after a full collection: a cycle marking a multi-GiB index takes
// seconds, and with 10 s phases it would otherwise land on the same route run after run
// (-collect=false lets cycles fall where they may).
//
//	go run ./bench/access -devices 1000000 -conns 32 -duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// The goals, relative to the baseline measured in the same run.
const (
	goalThroughput = 0.8 // access req/s >= 0.8x baseline req/s
	goalP99        = 2.0 // access p99 <= 2x baseline p99
)

// Route prefixes; a device ID follows.
const (
	accessPrefix   = "/access/v1/devices/"
	baselinePrefix = "/baseline/"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.Devices, "devices", 1_000_000, "devices in the decision index")
	flag.IntVar(&cfg.Conns, "conns", 32, "concurrent keep-alive clients, one connection each")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each measured phase")
	flag.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured load on each route before the first phase")
	flag.IntVar(&cfg.Rounds, "rounds", 2, "baseline+access phase pairs")
	flag.BoolVar(&cfg.Collect, "collect", true, "run a full GC before each phase (false: phases catch GC cycles as they come)")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	flag.Parse()

	r, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "access:", err)
		os.Exit(1)
	}
	report(os.Stdout, r)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "access:", err)
			os.Exit(1)
		}
	}
}

// config is one run's shape.
type config struct {
	Devices  int
	Conns    int
	Duration time.Duration
	Warmup   time.Duration
	Rounds   int
	// Collect runs a full collection before each phase, so every phase starts at the same point
	// of the collector's cycle instead of one route catching the index's marking by chance.
	Collect bool
}

// result is everything a run measured.
type result struct {
	Devices     int     `json:"devices"`
	Conns       int     `json:"conns"`
	PhaseSecs   float64 `json:"phase_seconds"`
	FillSeconds float64 `json:"fill_seconds"`
	HeapInUse   uint64  `json:"heap_in_use_bytes"`
	HeapPerDev  float64 `json:"heap_bytes_per_device"`
	AnswerBytes int     `json:"answer_bytes"` // mean decision answer size, and the baseline's body size
	AllowShare  float64 `json:"allow_share"`
	// CollectSecs is the longest full collection run between phases: what marking the index costs.
	CollectSecs float64 `json:"collect_seconds,omitempty"`
	Phases      []phase `json:"phases"`
	Baseline    phase   `json:"baseline"` // every baseline phase merged
	Access      phase   `json:"access"`   // every access phase merged
}

// phase is one measured stretch of load on one route.
type phase struct {
	Name      string  `json:"name"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"requests_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	P999ms    float64 `json:"p999_ms"`
	GCs       uint64  `json:"gc_cycles"` // GC cycles that ended during the phase
	// CPU is the process's CPU time (user and system, client and server) over the phase's wall
	// time, in percent of one core: well under 100 x GOMAXPROCS means other processes took
	// the cores, which makes the phase slower for reasons that are not its own.
	CPU      float64 `json:"cpu_percent"`
	FirstErr string  `json:"first_error,omitempty"`

	lat []time.Duration // sorted
}

// run builds the server, fills the index, warms up and measures the interleaved phases.
func run(cfg config) (*result, error) {
	if cfg.Devices < 1 || cfg.Conns < 1 || cfg.Duration <= 0 || cfg.Rounds < 1 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("need devices, conns, rounds >= 1 and a positive duration (got %+v)", cfg)
	}
	b, err := newBench(cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()
	r := &result{
		Devices: cfg.Devices, Conns: cfg.Conns, PhaseSecs: cfg.Duration.Seconds(),
		FillSeconds: b.fillTime.Seconds(), HeapInUse: b.heapInUse,
		HeapPerDev:  (float64(b.heapInUse) - float64(b.heapBefore)) / float64(cfg.Devices),
		AnswerBytes: len(b.baseline), AllowShare: b.allowShare,
	}
	if cfg.Warmup > 0 {
		b.phase("warmup", baselinePrefix, cfg.Warmup)
		b.phase("warmup", accessPrefix, cfg.Warmup)
	}
	measure := func(name, prefix string) phase {
		if cfg.Collect {
			start := time.Now()
			runtime.GC()
			r.CollectSecs = max(r.CollectSecs, time.Since(start).Seconds())
		}
		p := b.phase(name, prefix, cfg.Duration)
		r.Phases = append(r.Phases, p)
		return p
	}
	var base, acc []phase
	for i := 1; i <= cfg.Rounds; i++ {
		base = append(base, measure(fmt.Sprintf("baseline-%d", i), baselinePrefix))
		acc = append(acc, measure(fmt.Sprintf("access-%d", i), accessPrefix))
	}
	r.Baseline, r.Access = merge("baseline", base), merge("access", acc)
	return r, nil
}

// bench is the server under test and its clients.
type bench struct {
	dir     string
	ca      *certs.Authority
	st      *boltstore.Store
	index   *access.Index
	srv     *http.Server
	served  chan error
	origin  string // https://127.0.0.1:port
	auth    []string
	clients []*http.Transport

	ids        []string
	sizes      []int32 // the answer size of ids[i], to check each response
	baseline   []byte
	allowShare float64
	fillTime   time.Duration
	heapBefore uint64
	heapInUse  uint64
}

func newBench(cfg config) (_ *bench, err error) {
	b := &bench{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.dir, err = os.MkdirTemp("", "hale-bench-access"); err != nil {
		return nil, err
	}
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	master, err := seal.New(key)
	if err != nil {
		return nil, err
	}
	if b.st, err = boltstore.Open(filepath.Join(b.dir, "hale.db")); err != nil {
		return nil, err
	}
	// The real CA and server certificate, as mdmserver.New makes them.
	if b.ca, err = certs.Open(filepath.Join(b.dir, "ca"), master, certs.WithDB(b.st.CADB())); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	serverCert, err := b.ca.ServerCertificate([]string{"127.0.0.1", "::1", "localhost"})
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	tok, err := tokens.New(context.Background(), storage.Scope(b.st, func(tx storage.Tx) tokens.Tx { return tx }))
	if err != nil {
		return nil, err
	}
	_, secret, err := tok.Create(context.Background(), tokens.NewRequest{Name: "bench-access", Role: tokens.RoleAccess})
	if err != nil {
		return nil, err
	}
	b.auth = []string{"Bearer " + secret}

	b.heapBefore = heapInUse()
	start := time.Now()
	b.index = access.NewIndex()
	b.ids = fill(b.index, cfg.Devices, start)
	b.fillTime = time.Since(start)
	b.heapInUse = heapInUse()
	b.measureAnswers(start)

	// The server as mdmserver.Server.Serve and TLSConfig set it up; only the routes differ.
	logger := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	mux.Handle("GET "+accessPrefix+"{id}", tok.Require(logger, access.DeviceHandler(b.index), tokens.RoleAccess))
	mux.Handle("GET "+baselinePrefix+"{id}", tok.Require(logger, constantHandler(b.baseline), tokens.RoleAccess))
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: serverCert.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	b.ca.ConfigureClientAuth(tlsCfg)
	b.srv = &http.Server{
		Handler:           httpmw.Wrap(mux, logger, httpmw.NewMetrics(prometheus.NewRegistry())),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.origin = "https://" + ln.Addr().String()
	b.served = make(chan error, 1)
	go func() { b.served <- b.srv.ServeTLS(ln, "", "") }()

	roots := x509.NewCertPool()
	roots.AddCert(b.ca.Root())
	for range cfg.Conns {
		// One transport per client holds exactly one keep-alive connection, as a backend's
		// connection pool would.
		t := &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
		}
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		b.clients = append(b.clients, t)
	}
	return b, nil
}

func (b *bench) close() {
	for _, c := range b.clients {
		c.CloseIdleConnections()
	}
	if b.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.srv.Shutdown(ctx)
		cancel()
		<-b.served
	}
	// The CA keeps its database in the store: stop it first.
	if b.ca != nil {
		_ = b.ca.Close()
	}
	if b.st != nil {
		_ = b.st.Close()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// measureAnswers records every device's answer size, and builds the baseline body at their mean.
func (b *bench) measureAnswers(now time.Time) {
	b.sizes = make([]int32, len(b.ids))
	var total, allowed int
	for i, id := range b.ids {
		body, allow := b.index.LookupJSON(id, now)
		b.sizes[i] = int32(len(body))
		total += len(body)
		if allow {
			allowed++
		}
	}
	b.baseline = constantBody((total + len(b.ids)/2) / len(b.ids))
	b.allowShare = float64(allowed) / float64(len(b.ids))
}

// constantBody is a JSON object of exactly n bytes (n >= 48).
func constantBody(n int) []byte {
	const head, tail = `{"device_id":"baseline","allow":true,"pad":"`, `"}`
	body := make([]byte, 0, max(n, len(head)+len(tail)))
	body = append(body, head...)
	for len(body) < n-len(tail) {
		body = append(body, 'x')
	}
	return append(body, tail...)
}

// constantHandler is the baseline: the decision handler's headers and a body of the same size,
// with no lookup at all.
func constantHandler(body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.Write(body)
	}
}

// phase runs every client against prefix+{random device ID} for d and measures each request.
func (b *bench) phase(name, prefix string, d time.Duration) phase {
	type worker struct {
		lat      []time.Duration
		errs     int64
		firstErr error
	}
	ws := make([]worker, len(b.clients))
	gc0, cpu0 := gcCycles(), measure.ProcessCPU()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range b.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &ws[i]
			rng := mrand.New(mrand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			var buf bytes.Buffer
			for time.Now().Before(deadline) {
				n := rng.IntN(len(b.ids))
				want := len(b.baseline)
				if prefix == accessPrefix {
					want = int(b.sizes[n])
				}
				t0 := time.Now()
				err := b.get(c, b.origin+prefix+b.ids[n], want, &buf)
				w.lat = append(w.lat, time.Since(t0))
				if err != nil {
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	p := phase{Name: name, Seconds: elapsed.Seconds(), GCs: gcCycles() - gc0, CPU: 100 * (measure.ProcessCPU() - cpu0).Seconds() / elapsed.Seconds()}
	for _, w := range ws {
		p.lat = append(p.lat, w.lat...)
		p.Errors += w.errs
		if w.firstErr != nil && p.FirstErr == "" {
			p.FirstErr = w.firstErr.Error()
		}
	}
	slices.Sort(p.lat)
	p.summarize()
	return p
}

// get fetches url on c and checks the answer: 200 and the expected size (an unknown device, an
// unloaded index or a problem document would differ).
func (b *bench) get(c *http.Transport, url string, want int, buf *bytes.Buffer) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header["Authorization"] = b.auth
	resp, err := c.RoundTrip(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("GET %s: read body: %w", url, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: status %d: %.200s", url, resp.StatusCode, buf.Bytes())
	case buf.Len() != want:
		return fmt.Errorf("GET %s: %d bytes, want %d: %.200s", url, buf.Len(), want, buf.Bytes())
	}
	return nil
}

func (p *phase) summarize() {
	p.Requests = int64(len(p.lat))
	if p.Seconds > 0 {
		p.PerSecond = float64(p.Requests) / p.Seconds
	}
	p.P50ms = measure.Millis(measure.Percentile(p.lat, 0.50))
	p.P99ms = measure.Millis(measure.Percentile(p.lat, 0.99))
	p.P999ms = measure.Millis(measure.Percentile(p.lat, 0.999))
}

// merge sums phases of one route: throughput over their total time, percentiles over every request.
func merge(name string, ps []phase) phase {
	m := phase{Name: name}
	for _, p := range ps {
		m.lat = append(m.lat, p.lat...)
		m.Errors += p.Errors
		m.Seconds += p.Seconds
		m.GCs += p.GCs
		m.CPU += p.CPU * p.Seconds
		if m.FirstErr == "" {
			m.FirstErr = p.FirstErr
		}
	}
	if m.Seconds > 0 {
		m.CPU /= m.Seconds
	}
	slices.Sort(m.lat)
	m.summarize()
	return m
}

// heapInUse returns the heap in use after a full collection: live data and its spans.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// gcCycles reads the completed GC cycle count without stopping the world.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// goals returns the access/baseline ratios and whether each goal is met.
func goals(r *result) (tput, p99 float64, tputOK, p99OK, errsOK bool) {
	if r.Baseline.PerSecond > 0 {
		tput = r.Access.PerSecond / r.Baseline.PerSecond
	}
	if r.Baseline.P99ms > 0 {
		p99 = r.Access.P99ms / r.Baseline.P99ms
	}
	return tput, p99, tput >= goalThroughput, p99 > 0 && p99 <= goalP99, r.Access.Errors == 0 && r.Baseline.Errors == 0
}

func report(w io.Writer, r *result) {
	fmt.Fprintf(w, "%d devices, %d keep-alive HTTP/1.1 clients over TLS on loopback, %s per phase, GOMAXPROCS %d\n",
		r.Devices, r.Conns, time.Duration(r.PhaseSecs*float64(time.Second)), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "index fill %.1fs (%.0f decisions/s), heap in use after fill %.0f MiB (%.0f B/device);\n",
		r.FillSeconds, float64(r.Devices)/r.FillSeconds, float64(r.HeapInUse)/(1<<20), r.HeapPerDev)
	fmt.Fprintf(w, "answers %d B on average (the baseline's constant body), %.1f%% allow\n", r.AnswerBytes, 100*r.AllowShare)
	if r.CollectSecs > 0 {
		fmt.Fprintf(w, "a full GC before each phase (longest %.2fs); GCs: cycles that ended inside the phase\n", r.CollectSecs)
	}
	fmt.Fprintf(w, "cpu%%: this process's CPU over wall time, 100 per core; well under %d usually means other processes had the cores\n", 100*runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "%-10s %9s %7s %9s %8s %8s %9s %4s %5s\n", "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "GCs", "cpu%")
	row := func(p phase) {
		fmt.Fprintf(w, "%-10s %9d %7d %9.0f %8.3f %8.3f %9.3f %4d %5.0f\n", p.Name, p.Requests, p.Errors, p.PerSecond, p.P50ms, p.P99ms, p.P999ms, p.GCs, p.CPU)
	}
	for _, p := range r.Phases {
		row(p)
	}
	row(r.Baseline)
	row(r.Access)
	tput, p99, tputOK, p99OK, errsOK := goals(r)
	fmt.Fprintf(w, "access/baseline: throughput %.2fx (goal >= %.1fx: %s), p99 %.2fx (goal <= %.1fx: %s), errors %d (goal 0: %s)\n",
		tput, goalThroughput, verdict(tputOK), p99, goalP99, verdict(p99OK), r.Access.Errors+r.Baseline.Errors, verdict(errsOK))
	for _, p := range []phase{r.Baseline, r.Access} {
		if p.FirstErr != "" {
			fmt.Fprintf(w, "first %s error: %s\n", p.Name, p.FirstErr)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
