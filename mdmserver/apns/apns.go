// Package apns builds the HTTP/2 clients nanomdm's push provider uses to reach Apple's Push
// Notification service, with a configurable base URL.
//
// nanomdm v0.9.0 always sends to Apple's production host. A different base URL (a test APNs
// server, a corporate egress proxy that terminates at a fixed address) is reached by rewriting
// each request's scheme and host in the client's transport; the path and headers are untouched,
// so the request is exactly what Apple would receive.
package apns

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/micromdm/nanomdm/push/nanopush"
)

// Production is Apple's APNs base URL, used when none is configured.
const Production = "https://api.push.apple.com"

// Option configures the clients made by NewClientFunc.
type Option func(*config)

type config struct {
	roots   *x509.CertPool
	timeout time.Duration
}

// WithRootCAs makes the clients trust roots instead of the system pool (a test APNs server).
func WithRootCAs(roots *x509.CertPool) Option { return func(c *config) { c.roots = roots } }

// WithTimeout bounds each push request (default 15s), so a hanging APNs never holds a command.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// NewClientFunc returns a nanopush.NewClient that presents the push certificate to baseURL.
// An empty baseURL means Apple's production service.
func NewClientFunc(baseURL string, opts ...Option) (nanopush.NewClient, error) {
	cfg := config{timeout: 15 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if baseURL == "" {
		baseURL = Production
	}
	target, err := url.Parse(baseURL)
	if err != nil || target.Scheme != "https" || target.Host == "" {
		return nil, fmt.Errorf("apns: base URL %q must be an https URL with a host", baseURL)
	}
	return func(cert *tls.Certificate) (*http.Client, error) {
		if cert == nil {
			return nil, fmt.Errorf("apns: no push certificate")
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{
			Certificates: []tls.Certificate{*cert},
			RootCAs:      cfg.roots,
			MinVersion:   tls.VersionTLS12,
		}
		t.ForceAttemptHTTP2 = true
		client := &http.Client{Timeout: cfg.timeout, Transport: t}
		if err := nanopush.ForceHTTP2(client); err != nil {
			return nil, fmt.Errorf("apns: enable HTTP/2: %w", err)
		}
		if target.String() != Production {
			client.Transport = rewrite{target: target, next: client.Transport}
		}
		return client, nil
	}, nil
}

// rewrite sends every request to target's scheme and host.
type rewrite struct {
	target *url.URL
	next   http.RoundTripper
}

func (rw rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rw.target.Scheme, rw.target.Host, rw.target.Host
	return rw.next.RoundTrip(r)
}
