// Package servertest runs a real Hale server on a loopback port, over its own TLS, for the tests
// outside package mdmserver (mdmctl's and the end-to-end tests): one way to start one, with a
// fake APNs for pushes and a test CA whose identities may check in as Apple devices. Its client
// holds every exchange to the OpenAPI document.
package servertest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
)

// Server is a started server and what a test needs to talk to it.
type Server struct {
	*mdmserver.Server
	T      testing.TB
	Config mdmserver.Config
	URL    string       // https://127.0.0.1:port
	Admin  string       // the bootstrap admin token
	Client *http.Client // trusts the server's root CA
	// APNs receives the server's pushes; DeviceCA issues identities /mdm accepts (mdm_ca_file).
	APNs     *fakeapns.Server
	DeviceCA *testpki.CA
}

// Start starts a server with a fresh data directory and the defaults, changed by mutate. It
// stops when the test ends.
func Start(t testing.TB, mutate ...func(*mdmserver.Config)) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{T: t, APNs: fakeapns.New(), DeviceCA: testpki.NewCA(t, "device CA")}
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
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(log), mdmserver.WithAPNsRootCAs(s.APNs.CertPool()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	tok, err := os.ReadFile(srv.AdminTokenPath())
	if err != nil {
		t.Fatal(err)
	}
	s.Server, s.Config = srv, cfg
	s.URL = "https://" + ln.Addr().String()
	s.Admin = strings.TrimSpace(string(tok))
	// Every exchange of this client is held to the OpenAPI document (apitest.Checked).
	s.Client = &http.Client{Timeout: 30 * time.Second, Transport: apitest.Checked(t, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}})}
	return s
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
