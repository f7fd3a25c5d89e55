package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"github.com/halemdm/hale/internal/testclock"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tlsServer starts a real TLS server with the CA's server certificate and client verification.
// Its handler answers with the client's device ID.
func tlsServer(t *testing.T, a *Authority) *httptest.Server {
	t.Helper()
	sc, err := a.ServerCertificate([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.ClientIdentity(r.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, id.DeviceID)
	}))
	srv.TLS = &tls.Config{GetCertificate: sc.GetCertificate, MinVersion: tls.VersionTLS12}
	a.ConfigureClientAuth(srv.TLS)
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// call makes one request on a new connection (or a resumed session when cache is set).
func call(t *testing.T, a *Authority, url string, cert *tls.Certificate, cache tls.ClientSessionCache) (string, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(a.Root())
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + string(b))
	}
	return string(b), nil
}

func TestMTLSHandshake(t *testing.T) {
	a := newTestCA(t)
	srv := tlsServer(t, a)

	good := issueAgent(t, a, "dev-ok")
	if got, err := call(t, a, srv.URL, good, nil); err != nil || got != "dev-ok" {
		t.Fatalf("fresh identity: %q, %v", got, err)
	}
	// A leaf sent without its intermediate (as Apple devices do) is accepted.
	leafOnly := *good
	leafOnly.Certificate = leafOnly.Certificate[:1]
	if _, err := call(t, a, srv.URL, &leafOnly, nil); err != nil {
		t.Fatalf("leaf without intermediate: %v", err)
	}
	// No client certificate: the handshake passes, the handler refuses.
	if _, err := call(t, a, srv.URL, nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no client cert: %v", err)
	}

	// Revocation takes effect on the next handshake, resumed sessions included.
	victim := issueAgent(t, a, "dev-lost")
	cache := tls.NewLRUClientSessionCache(4)
	if _, err := call(t, a, srv.URL, victim, cache); err != nil {
		t.Fatalf("before revoke: %v", err)
	}
	if err := a.Revoke(context.Background(), victim.Leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, a, srv.URL, victim, cache); err == nil {
		t.Fatal("revoked certificate accepted (resumed session)")
	}
	if _, err := call(t, a, srv.URL, victim, nil); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{victim.Leaf}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("VerifyClientCert(revoked) = %v", err)
	}
	// Others are unaffected.
	if _, err := call(t, a, srv.URL, good, nil); err != nil {
		t.Fatalf("good identity after another revoke: %v", err)
	}

	// A certificate from a foreign CA with the same names is refused.
	foreign := newTestCA(t)
	alien := issueAgent(t, foreign, "dev-ok")
	if _, err := call(t, a, srv.URL, alien, nil); err == nil {
		t.Fatal("foreign CA certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{alien.Leaf, foreign.Intermediate()}); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(foreign) = %v", err)
	}
	if err := a.VerifyClientCert(nil); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(nil) = %v", err)
	}
}

func TestMTLSRefusesExpired(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	now := time.Now()
	// The CA is made 200 days ago; an agent identity issued 100 days ago expired 10 days ago.
	clk := testclock.New(now.Add(-200 * 24 * time.Hour))
	old := openCA(t, dir, key, WithClock(clk.Now))
	clk.Set(now.Add(-100 * 24 * time.Hour))
	expired := issueAgent(t, old, "dev-old")
	clk.Set(now.Add(-24 * time.Hour))
	recent := issueAgent(t, old, "dev-new")
	old.Close()

	a := openCA(t, dir, key) // restart on the real clock
	srv := tlsServer(t, a)
	if _, err := call(t, a, srv.URL, recent, nil); err != nil {
		t.Fatalf("valid identity issued before restart: %v", err)
	}
	if _, err := call(t, a, srv.URL, expired, nil); err == nil {
		t.Fatal("expired certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{expired.Leaf}); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(expired) = %v", err)
	}
	if _, err := a.Renew(context.Background(), expired.Leaf); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("Renew(expired) = %v", err)
	}
}

func TestServerCertificateRenewsBeforeExpiry(t *testing.T) {
	clk := testclock.New(time.Now())
	a := newTestCA(t, WithClock(clk.Now))
	sc, err := a.ServerCertificate([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	first := sc.Leaf()
	if len(first.IPAddresses) != 1 || !first.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || first.DNSNames[0] != "localhost" {
		t.Fatalf("names %v %v", first.DNSNames, first.IPAddresses)
	}
	if c, _ := sc.GetCertificate(nil); c.Leaf != first {
		t.Fatal("renewed too early")
	}
	// Past two thirds of the lifetime: the current certificate is served while a new one is made.
	clk.Set(clk.Now().Add(ServerLifetime * 3 / 4))
	if c, err := sc.GetCertificate(nil); err != nil || c.Leaf != first {
		t.Fatalf("during renewal: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sc.Leaf() == first && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sc.Leaf() == first {
		t.Fatal("server certificate not renewed")
	}
	// Expired: renewed before the handshake continues.
	second := sc.Leaf()
	clk.Set(second.NotAfter.Add(time.Hour))
	c, err := sc.GetCertificate(nil)
	if err != nil || c.Leaf == second || !c.Leaf.NotAfter.After(clk.Now()) {
		t.Fatalf("expired certificate not replaced: %v", err)
	}
}

func BenchmarkVerifyClientCert(b *testing.B) {
	a := newTestCA(b)
	c := issueAgent(b, a, "bench")
	chain := []*x509.Certificate{c.Leaf}
	for b.Loop() {
		if err := a.VerifyClientCert(chain); err != nil {
			b.Fatal(err)
		}
	}
}
