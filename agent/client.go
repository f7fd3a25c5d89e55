package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/internal/problem"
)

// client speaks the agent contract to one server.
type client struct {
	base string // "https://host[:port][/prefix]", no trailing slash
	hc   *http.Client
	tr   *http.Transport
}

// newTransport returns a small HTTP/1.1 transport: the agent makes one request at a time per
// loop, so one or two idle connections are enough and memory stays low.
func newTransport(cfg *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg,
		TLSHandshakeTimeout:   15 * time.Second,
		MaxIdleConns:          2,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // the long poll waits; each call has its own context deadline
	}
}

func newClient(base string, cfg *tls.Config) *client {
	tr := newTransport(cfg)
	return &client{base: base, tr: tr, hc: &http.Client{
		Transport: tr,
		// The contract has no redirects; following one could leak the request to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// pinnedTLS returns the configuration of all traffic after enrollment: only the pinned CA is
// trusted, and the client certificate comes from cert (so a renewal takes effect at once).
func pinnedTLS(ca *x509.Certificate, cert func() *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil
		}
	}
	return cfg
}

// normalizeServerURL checks an https URL and returns it without a trailing slash.
func normalizeServerURL(raw string) (string, *url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", nil, fmt.Errorf("invalid server URL %q: %w", raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", nil, fmt.Errorf("invalid server URL %q: it must be https://host[:port]", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", nil, fmt.Errorf("invalid server URL %q: no user info, query or fragment", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), u, nil
}

// do sends one request and decodes a 2xx JSON answer into out. A non-2xx answer is returned as a
// *problem.Details; a timeout, a refused connection or garbage is an ordinary error.
func (c *client) do(ctx context.Context, timeout time.Duration, method, path string, in any, out validator) error {
	_, _, err := c.exchange(ctx, timeout, method, path, in, out, nil)
	return err
}

// exchange is do with request headers, returning the status and the response headers. A 304
// Not Modified is not an error and decodes nothing.
func (c *client) exchange(ctx context.Context, timeout time.Duration, method, path string, in any, out validator, hdr http.Header) (int, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mdmagent/"+buildinfo.String())
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() {
		// Drain a little so the connection can be reused, but never read a flood.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode == http.StatusNotModified {
		return resp.StatusCode, resp.Header, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, resp.Header, problem.Read(resp)
	}
	if out != nil {
		if err := decodeResponse(resp.Body, maxResponse, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

// problemCode returns the problem code of err, or "" when err is not a server problem.
func problemCode(err error) string {
	var p *problem.Details
	if errors.As(err, &p) {
		return p.Code
	}
	return ""
}

// problemStatus returns the HTTP status of err, or 0 when err is not a server problem.
func problemStatus(err error) int {
	var p *problem.Details
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}
