// Package servertest runs a real Hale server on a loopback port, over its own TLS: the one way
// every test starts one, in package mdmserver's own tests as in mdmctl's and the end-to-end
// tests. The server gets a fake APNs for pushes and a test CA whose identities may check in as
// simulated Apple devices (devices.go); its client holds every exchange to the OpenAPI
// document.
package servertest

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
)

// Server is a started server and what a test needs to talk to it. Restart replaces the
// embedded *mdmserver.Server, URL's server and Client; the other fields stay.
type Server struct {
	*mdmserver.Server
	T      testing.TB
	Config mdmserver.Config
	// PublicURL is the base URL the server names in what it hands out (enrollment profiles,
	// token issuers): Config.PublicURL, or the default the server derives from Config.Listen.
	PublicURL string
	URL       string       // https://127.0.0.1:port
	Admin     string       // the bootstrap admin token ("" on a restored data directory)
	Client    *http.Client // trusts the server's root CA
	// APNs receives the server's pushes; DeviceCA issues identities /mdm accepts (mdm_ca_file).
	APNs     *fakeapns.Server
	DeviceCA *testpki.CA

	opts []mdmserver.Option // beyond the logger and the APNs roots, at every start
	stop func()             // stops the running server; runs at cleanup unless called before
}

// Start starts a server with a fresh data directory and the defaults, changed by mutate. It
// stops when the test ends.
func Start(t testing.TB, mutate ...func(*mdmserver.Config)) *Server {
	t.Helper()
	return StartWith(t, nil, mutate...)
}

// StartWith is Start with server options, such as mdmserver.WithClock. They apply at every
// start, restarts included.
func StartWith(t testing.TB, opts []mdmserver.Option, mutate ...func(*mdmserver.Config)) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{T: t, APNs: fakeapns.New(), DeviceCA: testpki.NewCA(t, "device CA"), opts: opts}
	t.Cleanup(s.APNs.Close)
	caFile := filepath.Join(dir, "device-ca.pem")
	if err := os.WriteFile(caFile, s.DeviceCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mdmserver.Defaults()
	cfg.Listen = ln.Addr().String()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.APNsURL = s.APNs.URL()
	cfg.MDMCAFile = caFile
	for _, m := range mutate {
		m(&cfg)
	}
	s.Config = cfg
	// New validates a copy of the configuration, which fills in the public URL; this is the same
	// derivation, so that tests can compare what the server hands out.
	validated := cfg
	if err := validated.Validate(); err == nil {
		s.PublicURL = validated.PublicURL
	}
	s.start(ln)
	return s
}

// Logger logs to stderr at debug level when the tests run with -v, and discards otherwise.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start builds a server on s.Config and serves it on ln until Stop or the end of the test.
func (s *Server) start(ln net.Listener) {
	t := s.T
	t.Helper()
	srv, err := mdmserver.New(s.Config, append([]mdmserver.Option{mdmserver.WithLogger(Logger()),
		mdmserver.WithAPNsRootCAs(s.APNs.CertPool())}, s.opts...)...)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	s.Server = srv
	s.URL = "https://" + ln.Addr().String()
	// Every exchange of this client is held to the OpenAPI document (apitest.Checked). It speaks
	// HTTP/2 when the server offers it, as the server's real clients do.
	s.Client = &http.Client{Timeout: 30 * time.Second, Transport: apitest.Checked(t, &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}, ForceAttemptHTTP2: true})}
	// A data directory restored from a backup has tokens already, so no bootstrap token file.
	tok, err := os.ReadFile(srv.AdminTokenPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("bootstrap admin token: %v", err)
	}
	s.Admin = strings.TrimSpace(string(tok))
}

// Stop shuts the server down gracefully and closes it, failing the test if either fails. It
// does nothing the second time, and Restart may follow it.
func (s *Server) Stop() {
	s.T.Helper()
	s.stop()
}

// Restart stops the server (unless Stop did already) and starts another with the same
// configuration and options on the same data directory and address.
func (s *Server) Restart() {
	s.T.Helper()
	s.stop()
	ln, err := net.Listen("tcp", s.Config.Listen)
	if err != nil {
		s.T.Fatal(err)
	}
	s.start(ln)
}

// Do sends an API request with the server's client and returns the status (-1 when nothing
// answered); a JSON answer is decoded into out when out is not nil. See apitest.Do.
func (s *Server) Do(method, path, token string, body, out any) int {
	s.T.Helper()
	return apitest.Do(s.T, s.Client, method, s.URL+path, token, body, out)
}

// Call sends an API request and fails the test unless the status is want; a JSON answer is
// decoded into out when out is not nil.
func (s *Server) Call(method, path, token string, body any, want int, out any) {
	s.T.Helper()
	apitest.Must(s.T, s.Client, method, s.URL+path, token, body, want, out)
}

// Token creates an API token with role and returns its secret.
func (s *Server) Token(role string) string {
	s.T.Helper()
	var tok struct{ Token string }
	s.Call("POST", "/api/v1/tokens", s.Admin, map[string]string{"name": role + "-desk", "role": role}, 201, &tok)
	return tok.Token
}
