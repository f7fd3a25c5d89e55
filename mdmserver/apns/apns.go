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
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
		client := &http.Client{Timeout: cfg.timeout, Transport: t}
		if err := nanopush.ForceHTTP2(client); err != nil {
			return nil, fmt.Errorf("apns: enable HTTP/2: %w", err)
		}
		if target.String() != Production {
			client.Transport = &Rewriter{Target: target, Hosts: APNsHosts, Base: client.Transport}
		}
		return client, nil
	}, nil
}

// APNsHosts are the host names of Apple's APNs provider API (production and development), the
// hosts nanopush addresses.
var APNsHosts = []string{"api.push.apple.com", "api.development.push.apple.com"}

// Rewriter is an http.RoundTripper that sends requests addressed to one of Hosts to Target
// instead, and every other request unchanged. The request's path and query are kept (appended to
// Target's path); the original request is not modified.
type Rewriter struct {
	// Target is the scheme and host (and optional path prefix) matching requests go to.
	Target *url.URL
	// Hosts are the host names (without port) to rewrite, compared case-insensitively.
	Hosts []string
	// Base performs the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (rw *Rewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	base := rw.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if r.URL == nil || !slices.ContainsFunc(rw.Hosts, func(h string) bool { return strings.EqualFold(h, r.URL.Hostname()) }) {
		return base.RoundTrip(r)
	}
	if rw.Target == nil || rw.Target.Host == "" {
		if r.Body != nil {
			r.Body.Close() // a RoundTripper closes the body even on error
		}
		return nil, errors.New("apns: rewriter has no target URL")
	}
	r2 := r.Clone(r.Context())
	u := *r.URL
	u.Scheme, u.Host = rw.Target.Scheme, rw.Target.Host
	u.Path = strings.TrimSuffix(rw.Target.Path, "/") + r.URL.Path
	if r.URL.RawPath != "" {
		u.RawPath = strings.TrimSuffix(rw.Target.EscapedPath(), "/") + r.URL.RawPath
	}
	r2.URL = &u
	r2.Host = "" // the transport then uses, and TLS verifies, the rewritten host
	return base.RoundTrip(r2)
}
