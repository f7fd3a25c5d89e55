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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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

	"github.com/halemdm/hale/internal/apitest"
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

// server is the Hale server under test and the clients that reach it.
type server struct {
	url    string
	client *http.Client
	roots  *x509.CertPool
	admin  string
}

func (s *server) call(method, path, token string, body, out any) int {
	return apitest.Do(tb, s.client, method, s.url+path, token, body, out)
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
	s := &server{url: "https://" + ln.Addr().String(), roots: srv.RootCAs(), admin: string(admin[:len(admin)-1]),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}, MaxIdleConnsPerHost: concurrency}}}

	// The backend verifies SETs against the server's published keys, as a real one would.
	var ssf struct{ Issuer string }
	s.call("GET", "/.well-known/ssf-configuration", "", nil, &ssf)
	client, err := posture.NewClient(s.url, posture.WithRootCAs(s.roots))
	if err != nil {
		return result{}, err
	}
	receiver.start(client.Keys(), ssf.Issuer)

	it, security := s.token("it"), s.token("security")
	s.call("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 1h\n", nil)
	s.call("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.enrollCompliantAgent(it)
	}
	var stream struct {
		ID string `json:"stream_id"`
	}
	if code := s.call("POST", "/ssf/v1/stream", s.token("access"), map[string]any{
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
				if code := s.call("POST", "/api/v1/devices/"+id+"/wipe", security, `{"reason":"bench","mode":"selective"}`, nil); code != http.StatusAccepted {
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

func (s *server) token(role string) string {
	var tok struct{ Token string }
	if code := s.call("POST", "/api/v1/tokens", s.admin, map[string]string{"name": role, "role": role}, &tok); code != http.StatusCreated {
		tb.Fatalf("create %s token: %d", role, code)
	}
	return tok.Token
}

// enrollCompliantAgent enrolls an agent identity and sends one compliant report for it.
func (s *server) enrollCompliantAgent(it string) string {
	var e struct{ Token string }
	s.call("POST", "/api/v1/enrollments", it, `{"owner":"bench","group":"ward","platform":"agent","ttl":"1h"}`, &e)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		tb.Fatal(err)
	}
	var id struct {
		DeviceID         string `json:"device_id"`
		CertificateChain string `json:"certificate_chain"`
	}
	if code := s.call("POST", "/agent/v1/enroll", "", map[string]any{"token": e.Token,
		"csr":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		"facts": map[string]string{"hostname": "bench", "os": "linux", "os_version": "24.04"}}, &id); code != http.StatusCreated {
		tb.Fatalf("agent enroll: %d", code)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tls.X509KeyPair([]byte(id.CertificateChain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		tb.Fatal(err)
	}
	agent := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{cert}}}}
	defer agent.CloseIdleConnections()
	var nonce struct{ Nonce string }
	apitest.Do(tb, agent, "GET", s.url+"/agent/v1/nonce", "", nil, &nonce)
	now := time.Now().UTC()
	claim := map[string]any{"value": true, "source": "agent", "observed_at": now}
	report := map[string]any{"nonce": nonce.Nonce, "sequence": 1, "collected_at": now, "posture": map[string]any{
		"platform": "linux", "reported_at": now, "disk_encrypted": claim, "swap_encrypted": claim}}
	if code := apitest.Do(tb, agent, "POST", s.url+"/agent/v1/report", "", report, nil); code != http.StatusOK {
		tb.Fatalf("report: %d", code)
	}
	return id.DeviceID
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
