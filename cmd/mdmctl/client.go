package main

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

	"github.com/halemdm/hale/internal/problem"
)

// Read limits: what mdmctl accepts from a server, so a broken or hostile one cannot exhaust
// memory. Exports are processed as streams and may be larger than an answer.
const (
	maxAnswer = 4 << 20
	// An export streams to a file or through the verifier in O(log n) memory, so its bound only
	// stops an endless answer: 1 TiB is some billions of entries.
	maxExport = 1 << 40
)

// requestTimeout bounds one API call that is not a stream.
const requestTimeout = 30 * time.Second

// client calls one Hale server with one bearer token. Every command goes through do.
type client struct {
	base  string // scheme://host[:port], no trailing slash
	token string
	http  *http.Client
}

// apiError is an answer with an error status; problem is the server's RFC 9457 document.
type apiError struct {
	method, path string
	status       int
	problem      *problem.Details
}

func (e *apiError) Error() string {
	p := e.problem
	msg := sanitize(p.Title)
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	if p.Detail != "" {
		msg += ": " + sanitize(p.Detail)
	}
	if p.RequestID != "" {
		msg += " (request " + sanitize(p.RequestID) + ")"
	}
	return msg
}

func (e *apiError) exitCode() int {
	switch e.status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitAuth
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity:
		return exitConflict
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		// The server refused what the user asked for: a bad value, like a bad flag.
		return exitUsage
	}
	return exitError
}

// isStatus reports whether err is an API error with status.
func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == status
}

// rawBody is a request body sent as it is, with its media type.
type rawBody struct {
	data        []byte
	contentType string
}

// call is one request; do builds the common case.
type call struct {
	method, path string
	body         any // nil, rawBody, or a value sent as JSON
	header       http.Header
}

// do sends one request and decodes the JSON answer into out (nil: discarded; *json.RawMessage:
// kept as it is). A non-2xx answer is an *apiError.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	return c.send(ctx, call{method: method, path: path, body: body}, out)
}

func (c *client) send(ctx context.Context, cl call, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	resp, err := c.open(ctx, cl)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", cl.method, cl.path, err)
	}
	if len(b) > maxAnswer {
		return fmt.Errorf("%s %s: the answer is larger than %d MiB", cl.method, cl.path, maxAnswer>>20)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		if !json.Valid(b) {
			return fmt.Errorf("%s %s: the answer is not JSON", cl.method, cl.path)
		}
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", cl.method, cl.path, err)
	}
	return nil
}

// stream sends a GET and returns the body of a 2xx answer, bounded to maxExport bytes: reading
// past the bound is an error, not a silent truncation.
func (c *client) stream(ctx context.Context, path string) (io.ReadCloser, error) {
	resp, err := c.open(ctx, call{method: http.MethodGet, path: path})
	if err != nil {
		return nil, err
	}
	return &boundedBody{r: resp.Body, left: maxExport}, nil
}

// open sends the request and turns an error status into an *apiError.
func (c *client) open(ctx context.Context, cl call) (*http.Response, error) {
	var (
		rd io.Reader
		ct string
	)
	switch b := cl.body.(type) {
	case nil:
	case rawBody:
		rd, ct = bytes.NewReader(b.data), b.contentType
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encoding the request: %w", cl.method, cl.path, err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", cl.method, cl.path, err)
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL; the path is enough and a query never holds a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s%s: %w", cl.method, c.base, cl.path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, &apiError{method: cl.method, path: cl.path, status: resp.StatusCode, problem: problem.Read(resp)}
	}
	return resp, nil
}

// boundedBody fails a read that would pass its limit.
type boundedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("the server sent more than %d MiB", maxExport>>20)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.r.Close() }

// newTransport trusts roots (nil: the system roots).
func newTransport(roots *x509.CertPool) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return tr
}

// httpClient returns a client that sends through tr, wrapped by a.wrapTransport when a test
// set one. Every request mdmctl makes goes through a client made here.
func (a *app) httpClient(tr *http.Transport) *http.Client {
	if a.wrapTransport == nil {
		return &http.Client{Transport: tr}
	}
	return &http.Client{Transport: a.wrapTransport(tr)}
}

// normalizeServer checks a server URL and returns scheme://host[:port][/path] without a
// trailing slash.
func normalizeServer(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", usagef("server must be a URL like https://mdm.example.org:8443, not %q", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", usagef("server URL must not carry credentials, a query or a fragment")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return "", usagef("use https: a token is never sent in the clear (http only to localhost)")
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pathf builds an API path, escaping each argument as one path segment.
func pathf(format string, segments ...string) string {
	args := make([]any, len(segments))
	for i, s := range segments {
		args[i] = url.PathEscape(s)
	}
	return fmt.Sprintf(format, args...)
}

// query appends the non-empty values to path as a query string.
func query(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
