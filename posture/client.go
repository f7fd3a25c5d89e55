package posture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultCacheTTL is how long a Client reuses a decision. Events (Receiver) drop entries sooner.
const DefaultCacheTTL = 5 * time.Second

// Limits on what the Client reads and caches.
const (
	maxDecisionBytes = 1 << 20
	maxBatchBytes    = 32 << 20
	maxCacheEntries  = 100_000
	maxDeviceIDLen   = 256
	defaultTimeout   = 10 * time.Second
)

// Client asks the Hale server's access API whether devices may open sessions. It fails closed:
// whenever it cannot get an answer, it answers a deny with ReasonUnreachable or
// ReasonInternalError together with the error. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
	ttl   time.Duration
	now   func() time.Time

	mu       sync.Mutex
	cache    map[string]cached   // subject key -> decision
	byDevice map[string][]string // device ID -> its subject keys, for Invalidate
	inflight map[string]*call    // subject key -> the request answering it now
}

type cached struct {
	d     Decision
	until time.Time
}

// call is one in-flight request that concurrent askers for the same subject share.
type call struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int // askers still waiting; the request is cancelled when none are left
	d       Decision
	err     error
	stale   bool // Invalidate ran while it was in flight: do not cache its answer
}

type clientConfig struct {
	hc    *http.Client
	token string
	roots *x509.CertPool
	certs []tls.Certificate
	ttl   time.Duration
	now   func() time.Time
	errs  []error
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

// WithHTTPClient makes the Client use hc as is. It cannot be combined with WithRootCAs,
// WithRootCAsPEM or WithClientCertificate: configure hc's transport instead.
func WithHTTPClient(hc *http.Client) ClientOption { return func(c *clientConfig) { c.hc = hc } }

// WithBearerToken authenticates to the access API with an API token of role "access".
func WithBearerToken(token string) ClientOption { return func(c *clientConfig) { c.token = token } }

// WithRootCAs trusts pool (the Hale server's root CA, /ca/root.pem) for the server's certificate.
func WithRootCAs(pool *x509.CertPool) ClientOption { return func(c *clientConfig) { c.roots = pool } }

// WithRootCAsPEM is WithRootCAs for PEM-encoded certificates.
func WithRootCAsPEM(pemCerts []byte) ClientOption {
	return func(c *clientConfig) {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCerts) {
			c.errs = append(c.errs, errors.New("posture: WithRootCAsPEM: no certificate found in the PEM"))
			return
		}
		c.roots = pool
	}
}

// WithClientCertificate authenticates to the access API with a client certificate instead of
// (or besides) a bearer token.
func WithClientCertificate(cert tls.Certificate) ClientOption {
	return func(c *clientConfig) { c.certs = append(c.certs, cert) }
}

// WithCacheTTL sets how long decisions are reused (default DefaultCacheTTL); 0 disables the
// cache.
func WithCacheTTL(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.ttl = max(d, 0) }
}

// WithClock sets the clock, for tests.
func WithClock(now func() time.Time) ClientOption { return func(c *clientConfig) { c.now = now } }

// NewClient returns a Client for the Hale server at baseURL ("https://hale.example.org:8443").
func NewClient(baseURL string, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("posture: server URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("posture: server URL %q must be https://host[:port]", baseURL)
	}
	u.Path, u.RawPath = strings.TrimRight(u.Path, "/"), strings.TrimRight(u.RawPath, "/")
	u.RawQuery, u.Fragment = "", ""

	cfg := clientConfig{ttl: DefaultCacheTTL, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	hc := cfg.hc
	switch {
	case hc != nil && (cfg.roots != nil || cfg.certs != nil):
		return nil, errors.New("posture: WithHTTPClient cannot be combined with WithRootCAs or WithClientCertificate")
	case hc == nil:
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.roots, Certificates: cfg.certs}
		hc = &http.Client{Transport: t, Timeout: defaultTimeout}
	}
	return &Client{
		base: u, hc: hc, token: cfg.token, ttl: cfg.ttl, now: cfg.now,
		cache: map[string]cached{}, byDevice: map[string][]string{}, inflight: map[string]*call{},
	}, nil
}

// Keys returns a key source for the server's /access/v1/jwks.json, fetched with this Client's
// transport and credentials, for NewVerifier and NewReceiver.
func (c *Client) Keys(opts ...RemoteOption) *RemoteKeySet {
	r := RemoteJWKS(c.endpoint("/access/v1/jwks.json"), c.hc, opts...)
	if c.token != "" {
		r.header = http.Header{"Authorization": {"Bearer " + c.token}}
	}
	return r
}

// Device answers whether device id may open a session, from the cache when it holds a
// decision younger than the TTL. On any failure it answers a deny and the error.
func (c *Client) Device(ctx context.Context, id string) (Decision, error) {
	if id == "" || len(id) > maxDeviceIDLen {
		err := fmt.Errorf("posture: invalid device ID (empty or longer than %d bytes)", maxDeviceIDLen)
		return denied(id, ReasonInvalidDeviceID, err), err
	}
	return c.cachedDo(ctx, "id:"+id, id, func(ctx context.Context) (Decision, error) {
		var d Decision
		if err := c.do(ctx, http.MethodGet, "/access/v1/devices/"+url.PathEscape(id), nil, maxDecisionBytes, &d); err != nil {
			return Decision{}, err
		}
		if d.DeviceID != id {
			return Decision{}, fmt.Errorf("posture: asked about device %q, the server answered about %q", id, truncate(d.DeviceID, 64))
		}
		return d, nil
	})
}

// Check answers whether the device s names may open a session. Subjects naming a device ID or a
// certificate are cached like Device; token subjects are always sent. On any failure it
// answers a deny and the error.
func (c *Client) Check(ctx context.Context, s Subject) (Decision, error) {
	key, err := subjectKey(s)
	if err != nil {
		return denied(s.DeviceID, ReasonInternalError, err), err
	}
	if s.DeviceID != "" {
		return c.Device(ctx, s.DeviceID)
	}
	return c.cachedDo(ctx, key, "", func(ctx context.Context) (Decision, error) {
		var d Decision
		if err := c.do(ctx, http.MethodPost, "/access/v1/check", CheckRequest{Subject: s}, maxDecisionBytes, &d); err != nil {
			return Decision{}, err
		}
		return d, nil
	})
}

// CheckBatch checks up to MaxCheckBatch subjects in one request and answers one decision per
// subject, in order. On failure every decision is a deny, and the error is returned.
func (c *Client) CheckBatch(ctx context.Context, subjects []Subject) ([]Decision, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	fail := func(code string, err error) ([]Decision, error) {
		out := make([]Decision, len(subjects))
		for i, s := range subjects {
			out[i] = denied(s.DeviceID, code, err)
		}
		return out, err
	}
	if len(subjects) > MaxCheckBatch {
		return fail(ReasonInternalError, fmt.Errorf("posture: %d subjects in one check, at most %d", len(subjects), MaxCheckBatch))
	}
	keys := make([]string, len(subjects))
	for i, s := range subjects {
		k, err := subjectKey(s)
		if err != nil {
			return fail(ReasonInternalError, fmt.Errorf("posture: subject %d: %w", i, err))
		}
		keys[i] = k
	}
	var resp CheckResponse
	if err := c.do(ctx, http.MethodPost, "/access/v1/check", CheckRequest{Devices: subjects}, maxBatchBytes, &resp); err != nil {
		return fail(ReasonCode(err), err)
	}
	if len(resp.Decisions) != len(subjects) {
		err := fmt.Errorf("posture: asked about %d subjects, the server answered %d decisions", len(subjects), len(resp.Decisions))
		return fail(ReasonInternalError, err)
	}
	for i, d := range resp.Decisions {
		if s := subjects[i]; s.DeviceID != "" && d.DeviceID != s.DeviceID {
			err := fmt.Errorf("posture: decision %d is about device %q, asked about %q", i, truncate(d.DeviceID, 64), s.DeviceID)
			return fail(ReasonInternalError, err)
		}
	}
	c.mu.Lock()
	for i, d := range resp.Decisions {
		c.store(keys[i], d)
	}
	c.mu.Unlock()
	return resp.Decisions, nil
}

// Invalidate drops every cached decision about deviceID, so the next question reaches the
// server. A Receiver calls it for every event.
func (c *Client) Invalidate(deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.byDevice[deviceID] {
		delete(c.cache, k)
	}
	delete(c.byDevice, deviceID)
	for k, cl := range c.inflight {
		if k == "id:"+deviceID || strings.HasPrefix(k, "cert:") {
			// An answer computed before the event must neither be cached nor handed to later
			// askers. A certificate lookup's device is unknown until it returns, so those go too.
			cl.stale = true
			delete(c.inflight, k)
		}
	}
}

// cachedDo answers key from the cache, joins an identical request in flight, or runs fetch.
func (c *Client) cachedDo(ctx context.Context, key, deviceID string, fetch func(context.Context) (Decision, error)) (Decision, error) {
	if c.ttl <= 0 || key == "" {
		d, err := fetch(ctx)
		if err != nil {
			return denied(deviceID, ReasonCode(err), err), err
		}
		return d, nil
	}
	c.mu.Lock()
	if e, ok := c.cache[key]; ok && c.now().Before(e.until) {
		c.mu.Unlock()
		return e.d.clone(), nil
	}
	cl, joined := c.inflight[key]
	if !joined {
		// The request runs on its own context so that one asker giving up does not fail the
		// others; it is cancelled when the last one gives up.
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call{done: make(chan struct{}), cancel: cancel}
		c.inflight[key] = cl
		go c.run(fctx, key, cl, fetch)
	}
	cl.waiters++
	c.mu.Unlock()

	select {
	case <-cl.done:
	case <-ctx.Done():
		c.mu.Lock()
		if cl.waiters--; cl.waiters == 0 {
			cl.cancel()
			if c.inflight[key] == cl {
				delete(c.inflight, key)
			}
		}
		c.mu.Unlock()
		err := fmt.Errorf("%w: %w", errUnreachable, ctx.Err())
		return denied(deviceID, ReasonUnreachable, err), err
	}
	if cl.err != nil {
		return denied(deviceID, ReasonCode(cl.err), cl.err), cl.err
	}
	return cl.d.clone(), nil
}

func (c *Client) run(ctx context.Context, key string, cl *call, fetch func(context.Context) (Decision, error)) {
	defer cl.cancel()
	d, err := fetch(ctx)
	c.mu.Lock()
	cl.d, cl.err = d, err
	if c.inflight[key] == cl {
		delete(c.inflight, key)
	}
	if err == nil && !cl.stale {
		c.store(key, d)
	}
	c.mu.Unlock()
	close(cl.done)
}

// store caches d under key; c.mu must be held. Decisions about no device (an unknown
// certificate) are not cached: Invalidate could never reach them.
func (c *Client) store(key string, d Decision) {
	if c.ttl <= 0 || key == "" || d.DeviceID == "" {
		return
	}
	now := c.now()
	if len(c.cache) >= maxCacheEntries {
		c.evict(now)
	}
	if _, ok := c.cache[key]; !ok && !slices.Contains(c.byDevice[d.DeviceID], key) {
		c.byDevice[d.DeviceID] = append(c.byDevice[d.DeviceID], key)
	}
	c.cache[key] = cached{d: d.clone(), until: now.Add(c.ttl)}
}

// evict makes room: expired entries first, then arbitrary ones (map order) down to 90%.
func (c *Client) evict(now time.Time) {
	for k, e := range c.cache {
		if !now.Before(e.until) || len(c.cache) > maxCacheEntries*9/10 {
			delete(c.cache, k)
			keys := slices.DeleteFunc(c.byDevice[e.d.DeviceID], func(s string) bool { return s == k })
			if len(keys) == 0 {
				delete(c.byDevice, e.d.DeviceID)
			} else {
				c.byDevice[e.d.DeviceID] = keys
			}
		}
	}
}

// do sends one request to the access API and decodes a 200 answer into out.
func (c *Client) do(ctx context.Context, method, path string, body any, limit int64, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("posture: encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), rd)
	if err != nil {
		return fmt.Errorf("posture: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hale-posture-go")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", errUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("%w: reading answer to %s %s: %w", errUnreachable, method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{StatusCode: resp.StatusCode}
		_ = json.Unmarshal(data, ae) // a problem document if the server sent one; best effort
		ae.Detail = truncate(ae.Detail, 512)
		return ae
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("posture: answer to %s %s is larger than %d bytes", method, path, limit)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("posture: decoding answer to %s %s: %w", method, path, err)
	}
	return nil
}

// endpoint joins the base URL and an already escaped path.
func (c *Client) endpoint(path string) string { return c.base.String() + path }

// subjectKey is the cache key of a subject, "" for subjects that are not cached (tokens). It
// also checks that exactly one way of naming the device is set.
func subjectKey(s Subject) (string, error) {
	n := 0
	for _, f := range []string{s.DeviceID, s.Certificate, s.CertificateSHA256, s.Token} {
		if f != "" {
			n++
		}
	}
	if n != 1 {
		return "", errors.New("posture: a subject must set exactly one of device_id, certificate, certificate_sha256, token")
	}
	switch {
	case s.DeviceID != "":
		return "id:" + s.DeviceID, nil
	case s.CertificateSHA256 != "":
		h := strings.ToLower(strings.ReplaceAll(s.CertificateSHA256, ":", ""))
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return "", errors.New("posture: certificate_sha256 is not a hex SHA-256")
		}
		return "cert:" + h, nil
	case s.Certificate != "":
		if b, _ := pem.Decode([]byte(s.Certificate)); b != nil && b.Type == "CERTIFICATE" {
			sum := sha256.Sum256(b.Bytes)
			return "cert:" + hex.EncodeToString(sum[:]), nil
		}
		return "", nil // let the server say what is wrong with it
	}
	return "", nil
}

// CertificateSubject names a device by its certificate, for Check.
func CertificateSubject(cert *x509.Certificate) Subject {
	sum := sha256.Sum256(cert.Raw)
	return Subject{CertificateSHA256: hex.EncodeToString(sum[:])}
}

// denied is the fail-closed answer when no decision could be had.
func denied(deviceID, code string, err error) Decision {
	return Decision{DeviceID: deviceID, Reasons: []Reason{{Code: code, Detail: err.Error()}}}
}

func (d Decision) clone() Decision {
	d.Reasons = slices.Clone(d.Reasons)
	d.Posture = bytes.Clone(d.Posture)
	return d
}
