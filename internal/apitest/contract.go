package apitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/halemdm/hale/mdmserver/openapi"
)

// contract is Hale's OpenAPI document, loaded once, with a router that finds the operation of
// a request.
type contract struct {
	doc     *openapi3.T
	router  routers.Router
	problem *openapi3.Schema // the shared error schema, for answers outside every operation
}

// loadContract loads the document as the server serves it, one JSON file that names nothing
// outside itself: the exchanges are checked against what a client gets.
var loadContract = sync.OnceValues(func() (*contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON())
	if err != nil {
		return nil, fmt.Errorf("openapi: load the document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: the document is not valid: %w", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: route the document: %w", err)
	}
	p := doc.Components.Schemas["Problem"]
	if p == nil || p.Value == nil {
		return nil, errors.New("openapi: the document has no Problem schema")
	}
	return &contract{doc: doc, router: r, problem: p.Value}, nil
})

func init() {
	// JSON Lines (the audit export): each line one value, checked as the items of an array.
	openapi3filter.RegisterBodyDecoder("application/jsonl", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		var out []any
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var v any
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				return nil, fmt.Errorf("line %d: %w", len(out)+1, err)
			}
			out = append(out, v)
		}
		return out, sc.Err()
	})
}

// CheckExchange checks one request and the server's answer to it against Hale's OpenAPI
// document (mdmserver/openapi), and returns what does not match, naming the operation.
//
//   - The request must be one the document describes; one it does not (an unknown path, a
//     method the path does not take) must be refused with a 404 or 405 problem.
//   - A request the document calls invalid (a missing token, a body or parameter off its
//     schema) must be refused by the server with a 4xx; a server that accepts it is lax or the
//     document too strict, and either is a failure.
//   - The answer must have a documented status, a documented content type and a body that
//     matches its schema, and must not carry JSON members the schema does not name: the
//     document lets clients ignore unknown members, the tests do not let them appear unnoticed.
//
// body is the request body as sent and respBody the answer's, read in full.
func CheckExchange(req *http.Request, body []byte, resp *http.Response, respBody []byte) error {
	c, err := loadContract()
	if err != nil {
		return err
	}
	return c.check(req, body, resp, respBody)
}

func (c *contract) check(req *http.Request, body []byte, resp *http.Response, respBody []byte) error {
	// HEAD is GET without a body: the router knows only GET.
	probe := req.Clone(context.Background())
	if req.Method == http.MethodHead {
		probe.Method = http.MethodGet
	}
	probe.Body, probe.GetBody = nil, nil
	route, params, err := c.router.FindRoute(probe)
	if err != nil {
		return c.checkUnrouted(req, err, resp, respBody)
	}
	name := fmt.Sprintf("%s %s (%s)", route.Method, route.Path, route.Operation.OperationID)
	in := &openapi3filter.RequestValidationInput{
		Request: probe, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: authenticate, MultiError: true},
	}
	var problems []string
	if reqErr := c.checkRequest(in, body); reqErr != nil && (resp.StatusCode < 400 || resp.StatusCode > 499) {
		problems = append(problems, fmt.Sprintf("the server answered %d to a request the document calls invalid: %v", resp.StatusCode, reqErr))
	}
	if err := checkResponse(in, req.Method, resp, respBody); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("openapi: %s: %s", name, strings.Join(problems, "; "))
	}
	return nil
}

// checkRequest validates the request. A body sent without Content-Type is read by the server
// as the operation's media type, so it is valid when it validates as any media type the
// operation documents.
func (c *contract) checkRequest(in *openapi3filter.RequestValidationInput, body []byte) error {
	try := func(contentType string) error {
		r := in.Request.Clone(context.Background())
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
		try := *in
		try.Request = r
		return openapi3filter.ValidateRequest(context.Background(), &try)
	}
	rb := in.Route.Operation.RequestBody
	if len(body) == 0 || in.Request.Header.Get("Content-Type") != "" || rb == nil || rb.Value == nil || rb.Value.Content.Get("") != nil {
		return try("")
	}
	var first error
	for _, mt := range slices.Sorted(maps.Keys(rb.Value.Content)) {
		err := try(mt)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// checkResponse validates the answer: its status, content type and body, and that its JSON
// names nothing the schema does not.
func checkResponse(in *openapi3filter.RequestValidationInput, method string, resp *http.Response, body []byte) error {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: method == http.MethodHead},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("answer %d: %w", resp.StatusCode, err)
	}
	if method == http.MethodHead {
		return nil
	}
	ref := in.Route.Operation.Responses.Status(resp.StatusCode)
	if ref == nil || ref.Value == nil {
		return nil
	}
	if len(ref.Value.Content) == 0 {
		if len(bytes.TrimSpace(body)) > 0 {
			return fmt.Errorf("answer %d: the document gives it no body, the server sent %d bytes", resp.StatusCode, len(body))
		}
		return nil
	}
	mt := ref.Value.Content.Get(resp.Header.Get("Content-Type"))
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return nil
	}
	return undeclaredMembers(resp, mt.Schema.Value, body)
}

// checkUnrouted checks the answer to a request the document has no operation for: a 404 (no
// such path) or 405 (no such method; with Allow) problem.
func (c *contract) checkUnrouted(req *http.Request, routeErr error, resp *http.Response, body []byte) error {
	name := req.Method + " " + req.URL.Path
	want := http.StatusNotFound
	if errors.Is(routeErr, routers.ErrMethodNotAllowed) {
		want = http.StatusMethodNotAllowed
	}
	switch {
	case resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed:
		return fmt.Errorf("openapi: %s is not in the document (%v), yet the server answered %d; want %d", name, routeErr, resp.StatusCode, want)
	case resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "":
		return fmt.Errorf("openapi: %s: 405 without Allow", name)
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json"):
		return fmt.Errorf("openapi: %s: answer %d is %q, not application/problem+json", name, resp.StatusCode, resp.Header.Get("Content-Type"))
	case req.Method == http.MethodHead:
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("openapi: %s: answer %d: %v", name, resp.StatusCode, err)
	}
	if err := c.problem.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("openapi: %s: answer %d does not match Problem: %w", name, resp.StatusCode, err)
	}
	if extra := undeclared(c.problem, v); len(extra) > 0 {
		return fmt.Errorf("openapi: %s: answer %d carries members the Problem schema does not name: %s", name, resp.StatusCode, strings.Join(extra, ", "))
	}
	return nil
}

// authenticate says whether a request shows what a security scheme asks for. The client side
// cannot see which certificate its TLS handshake sent, so mutual TLS is taken as shown: the
// tests that leave the certificate out check the server's 401 themselves.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	switch s := in.SecurityScheme; {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		scheme, tok, ok := strings.Cut(h.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return errors.New("no bearer token")
		}
	case s.Type == "apiKey" && s.In == "header":
		if h.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
	case s.Type == "mutualTLS":
	default:
		return fmt.Errorf("security scheme %q of type %s is not checked by apitest", in.SecuritySchemeName, s.Type)
	}
	return nil
}

// Checks reports whether Do checks t's exchanges against the document: it does for a test
// (testing.TB names its test), not for a benchmark harness such as measure.Harness, which has
// no name. The harness times the server, and a check costs about as much as a call.
func Checks(t TB) bool {
	_, named := t.(interface{ Name() string })
	return named
}

// Checked returns a transport that sends through base (http.DefaultTransport when nil) and
// checks every exchange against the document, failing t with what does not match. The test
// harnesses give their clients one, so a test's direct calls (a profile download, a wrong
// method) are checked as well as Do's; Do does not check an exchange twice.
func Checked(t TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &checked{t: t, base: base}
}

type checked struct {
	t    TB
	base http.RoundTripper
}

func isChecked(c *http.Client) bool {
	_, ok := c.Transport.(*checked)
	return ok
}

// RoundTrip sends req, reads the whole answer to check it, and hands it back readable.
func (c *checked) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		// The request is the caller's: it must go out as it came.
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		// The caller meets the same short body and error; there is nothing whole to check.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(got), errReader{err}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(got))
	if err := CheckExchange(req, body, resp, got); err != nil {
		c.t.Errorf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp, nil
}

// CloseIdleConnections passes on to the transport underneath, as http.Client expects.
func (c *checked) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
