// Command revocation measures how long a messaging backend waits to hear that a device was
// wiped: from the moment the wipe API call is made to the moment the backend's SET receiver
// (package posture, verifying the signature against the server's JWKS) has applied the
// session-revoked event. The server is the real one, in process, with its durable outbox
// (fsync on); the backend is a local HTTPS receiver. The wipe call's own round trip is
// measured beside it as the baseline. Goal: p99 under one second.
//
//	go run ./bench/revocation [-devices 200] [-concurrency 1]
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/halemdm/hale/bench/internal/fleet"
	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/posture"
)

var tb = measure.Harness{Name: "revocation"}

func main() {
	devices := flag.Int("devices", 200, "devices to enroll and wipe")
	concurrency := flag.Int("concurrency", 1, "wipes in flight at once")
	flag.Parse()
	r, err := run(os.Stdout, *devices, *concurrency)
	if err != nil {
		fmt.Fprintln(os.Stderr, "revocation:", err)
		os.Exit(1)
	}
	report(os.Stdout, r)
}

// result holds the two latency sets of one run.
type result struct {
	devices, concurrency int
	call, revoked        measure.Summary
}

func run(log io.Writer, n, concurrency int) (result, error) {
	dir, err := os.MkdirTemp("", "hale-bench-revocation")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)

	// The backend's receiver serves HTTPS with a certificate from a private CA the server is
	// told to trust (ssf_ca_file).
	backendCA := testpki.NewCA(tb, "backend CA")
	caFile := filepath.Join(dir, "backend-ca.pem")
	if err := os.WriteFile(caFile, backendCA.PEM, 0o600); err != nil {
		return result{}, err
	}
	receiver := newReceiver(backendCA)
	defer receiver.srv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	cfg := mdmserver.Defaults()
	cfg.Listen, cfg.DataDir, cfg.SSFCAFile = ln.Addr().String(), filepath.Join(dir, "data"), caFile
	// The receiver is on loopback: allow-list exactly its address, as an operator would.
	cfg.SSFAllowedDestinations = []string{receiver.srv.Listener.Addr().String()}
	cfg.EnrollBurst = n // every device enrolls from this one address
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return result{}, err
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	admin, err := os.ReadFile(srv.AdminTokenPath())
	if err != nil {
		return result{}, err
	}
	s := &fleet.Server{URL: "https://" + ln.Addr().String(), Roots: srv.RootCAs(), TB: tb,
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}, MaxIdleConnsPerHost: concurrency}}}
	adminToken := string(admin[:len(admin)-1])

	// The backend verifies SETs against the server's published keys, as a real one would.
	var ssf struct{ Issuer string }
	s.Call("GET", "/.well-known/ssf-configuration", "", nil, &ssf)
	client, err := posture.NewClient(s.URL, posture.WithRootCAs(s.Roots))
	if err != nil {
		return result{}, err
	}
	receiver.start(client.Keys(), ssf.Issuer)

	it, security := s.Token(adminToken, "it"), s.Token(adminToken, "security")
	s.Call("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 1h\n", nil)
	s.Call("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.EnrollCompliant(it).ID
	}
	var stream struct {
		ID string `json:"stream_id"`
	}
	if code := s.Call("POST", "/ssf/v1/stream", s.Token(adminToken, "access"), map[string]any{
		"delivery": map[string]string{"method": "urn:ietf:rfc:8935", "endpoint_url": receiver.url}, "aud": receiver.url}, &stream); code != http.StatusCreated {
		return result{}, fmt.Errorf("create event stream: %d", code)
	}
	fmt.Fprintf(log, "%d agent devices enrolled and compliant; wiping them, %d at a time\n", n, concurrency)

	var mu sync.Mutex
	var call, revoked []time.Duration
	work := make(chan string)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for id := range work {
				arrived := receiver.expect(id)
				start := time.Now()
				if code := s.Call("POST", "/api/v1/devices/"+id+"/wipe", security, `{"reason":"bench","mode":"selective"}`, nil); code != http.StatusAccepted {
					tb.Fatalf("wipe %s: %d", id, code)
				}
				took := time.Since(start)
				select {
				case at := <-arrived:
					mu.Lock()
					call, revoked = append(call, took), append(revoked, at.Sub(start))
					mu.Unlock()
				case <-time.After(30 * time.Second):
					tb.Fatalf("no session-revoked SET for %s within 30s", id)
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	return result{devices: n, concurrency: concurrency, call: measure.Summarize(call), revoked: measure.Summarize(revoked)}, nil
}

// receiver is the backend end: posture's SET receiver, telling waiters when a device's
// session-revoked event has been verified and applied.
type receiver struct {
	srv *httptest.Server
	url string

	mu      sync.Mutex
	waiters map[string]chan time.Time
	handler http.Handler
}

func newReceiver(ca *testpki.CA) *receiver {
	r := &receiver{waiters: map[string]chan time.Time{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		h := r.handler
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	cert, key := ca.Issue(tb, "127.0.0.1", testpki.ServerFor("127.0.0.1"))
	r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}
	r.srv.StartTLS()
	r.url = r.srv.URL + "/ssf/events"
	return r
}

// start installs the SET receiver once the server's keys and issuer are known.
func (r *receiver) start(keys posture.KeySource, issuer string) {
	h := posture.NewReceiver(keys, r.url, issuer, posture.WithOnEvent(
		func(_ context.Context, set posture.SETClaims, typ string, _ posture.CAEPEvent) {
			if typ != posture.EventSessionRevoked {
				return
			}
			r.mu.Lock()
			ch := r.waiters[set.SubID.ID]
			delete(r.waiters, set.SubID.ID)
			r.mu.Unlock()
			if ch != nil {
				ch <- time.Now()
			}
		}))
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
}

// expect returns a channel that receives the time device's session-revoked event arrives.
func (r *receiver) expect(device string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	r.waiters[device] = ch
	r.mu.Unlock()
	return ch
}

func report(w io.Writer, r result) {
	fmt.Fprintf(w, "%-26s %7s %9s %9s %9s\n", "measure", "samples", "p50 ms", "p99 ms", "max ms")
	for _, row := range []struct {
		name string
		s    measure.Summary
	}{{"wipe call (baseline)", r.call}, {"wipe -> SET at backend", r.revoked}} {
		fmt.Fprintf(w, "%-26s %7d %9.2f %9.2f %9.2f\n", row.name, row.s.N,
			measure.Millis(row.s.P50), measure.Millis(row.s.P99), measure.Millis(row.s.Max))
	}
	verdict := "PASS"
	if r.revoked.P99 >= time.Second {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "SET p99 / wipe call p99: %.2fx; goal p99 < 1000 ms: %s\n",
		float64(r.revoked.P99)/float64(max(r.call.P99, 1)), verdict)
}
