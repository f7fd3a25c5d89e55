package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
)

// backendSite is where a test runs the example messaging backend (examples/backend): a CA of
// its own, which the server trusts for event pushes, and a loopback address the server is
// allowed to push to.
type backendSite struct {
	ca     *testpki.CA
	caFile string
	addr   string
}

// newBackendSite makes the site; its CA certificate is written into dir (readable by all: it
// is public, and a test running the app as another user shares it).
func newBackendSite(t *testing.T, dir string) *backendSite {
	t.Helper()
	b := &backendSite{ca: testpki.NewCA(t, "backend CA"), caFile: filepath.Join(dir, "backend-ca.pem"), addr: freeAddr(t)}
	if err := os.WriteFile(b.caFile, b.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// allow lets the server push events to the site: a mutator for startServer.
func (b *backendSite) allow(c *mdmserver.Config) {
	c.SSFCAFile, c.SSFAllowedDestinations = b.caFile, []string{b.addr}
}

// start runs the backend at the site against srv with the access token and extra flags, and
// creates its event stream with that token; it returns the process and the stream's ID.
func (b *backendSite) start(t *testing.T, srv *server, accessTok string, flags ...string) (*process, string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := writeServerCert(t, b.ca, dir, "127.0.0.1")
	rootFile := filepath.Join(dir, "hale-root.pem")
	os.WriteFile(rootFile, srv.get(t, "/ca/root.pem"), 0o600)
	// The issuer names the server as its public URL says; the SSF metadata tells it.
	var ssf struct{ Issuer string }
	json.Unmarshal(srv.get(t, "/.well-known/ssf-configuration"), &ssf)
	args := append([]string{"--server", srv.url, "--ca", rootFile, "--token", accessTok, "--issuer", ssf.Issuer,
		"--listen", b.addr, "--tls-cert", certFile, "--tls-key", keyFile}, flags...)
	backend := startProcess(t, buildBinary(t, "examples/backend"), args...)
	var stream struct {
		ID string `json:"stream_id"`
	}
	receiver := "https://" + b.addr + "/ssf/events"
	srv.mustCall("POST", "/ssf/v1/stream", accessTok,
		`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"`+receiver+`"},"aud":"`+receiver+`"}`, 201, &stream)
	return backend, stream.ID
}

// client is a device's connection to the backend, presenting its Hale certificate.
func (b *backendSite) client(device tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(b.ca.Cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{device}}}}
}
