package apitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// harness is a TB that keeps what a failed check would have said. Like a benchmark harness it
// has no name, so Do does not check its exchanges.
type harness struct{ errs []string }

func (r *harness) Helper()                      {}
func (r *harness) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *harness) Fatalf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }

// recorder is a harness with a name, as a test has.
type recorder struct{ harness }

func (r *recorder) Name() string { return "recorder" }

// The checks cannot pass vacuously: a server that answers off the document fails the test that
// called it, with a message naming the operation and what is wrong; one that keeps to it does
// not.
func TestCheckExchange(t *testing.T) {
	problem := func(w http.ResponseWriter, status int) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("X-Request-Id", "r1")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"type":"https://hale.dev/problems/x","title":"x","status":%d,"code":"x","request_id":"r1"}`, status)
	}
	jsonAnswer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}
	}
	cases := []struct {
		name                string
		method, path, token string
		body                any
		server              http.HandlerFunc
		want                []string // substrings of the failure; none: the exchange is fine
	}{
		{name: "a matching answer", method: "GET", path: "/healthz",
			server: jsonAnswer(200, `{"status":"ok"}`)},
		{name: "a wrong value", method: "GET", path: "/healthz",
			server: jsonAnswer(200, `{"status":"fine"}`), want: []string{"GET /healthz (healthz)", "status"}},
		{name: "a missing member", method: "GET", path: "/api/v1/tokens", token: "t",
			server: jsonAnswer(200, `{}`), want: []string{"GET /api/v1/tokens (listTokens)", "tokens"}},
		{name: "an undocumented member", method: "GET", path: "/readyz",
			server: jsonAnswer(200, `{"status":"ready","db":"bolt"}`), want: []string{"GET /readyz (readyz)", "$.db"}},
		{name: "an undocumented nested member", method: "GET", path: "/api/v1/tokens", token: "t",
			server: jsonAnswer(200, `{"tokens":[{"id":"t1","name":"n","role":"it","person":"p","state":"active","created_at":"2026-01-02T03:04:05Z","hash":"h"}]}`),
			want:   []string{"$.tokens[0].hash"}},
		{name: "an undocumented status", method: "GET", path: "/healthz",
			server: jsonAnswer(201, `{"status":"ok"}`), want: []string{"GET /healthz (healthz)", "201"}},
		{name: "an undocumented content type", method: "GET", path: "/healthz",
			server: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprint(w, "ok")
			},
			want: []string{"GET /healthz (healthz)", "text/html"}},
		{name: "an error that is not a problem", method: "GET", path: "/api/v1/tokens",
			server: jsonAnswer(401, `{"error":"no"}`), want: []string{"GET /api/v1/tokens (listTokens)", "401"}},
		{name: "an invalid request refused", method: "POST", path: "/api/v1/tokens", token: "t", body: `{"name":"x","role":"root"}`,
			server: func(w http.ResponseWriter, r *http.Request) { problem(w, 400) }},
		{name: "an invalid request accepted", method: "POST", path: "/api/v1/tokens", token: "t", body: `{"name":"x","role":"root"}`,
			server: jsonAnswer(201, `{"id":"t1","name":"x","role":"it","person":"p","state":"active","created_at":"2026-01-02T03:04:05Z"}`),
			want:   []string{"POST /api/v1/tokens (createToken)", "answered 201 to a request the document calls invalid", "role"}},
		{name: "no token accepted", method: "GET", path: "/api/v1/enrollments",
			server: jsonAnswer(200, `{"enrollments":[]}`), want: []string{"calls invalid", "bearer"}},
		{name: "no token refused", method: "GET", path: "/api/v1/enrollments",
			server: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", "Bearer")
				problem(w, 401)
			}},
		{name: "a body without Content-Type read as the operation's media type", method: "PUT", path: "/api/v1/policies/p", token: "t",
			body: "encryption:\n  required: true\n", server: jsonAnswer(200, `{"name":"p","version":1,"updated_at":"2026-01-02T03:04:05Z","unobservable":[],"not_enforced":[]}`)},
		{name: "an unknown path answered 404", method: "GET", path: "/nope",
			server: func(w http.ResponseWriter, r *http.Request) { problem(w, 404) }},
		{name: "an unknown path answered 200", method: "GET", path: "/nope",
			server: jsonAnswer(200, `{}`), want: []string{"GET /nope is not in the document", "200"}},
		{name: "a wrong method without Allow", method: "DELETE", path: "/healthz",
			server: func(w http.ResponseWriter, r *http.Request) { problem(w, 405) }, want: []string{"405 without Allow"}},
		{name: "a body on a status without one", method: "POST", path: "/ssf/v1/subjects/add", token: "t",
			body:   `{"stream_id":"s1","subject":{"format":"opaque","id":"d_1"}}`,
			server: jsonAnswer(200, `{}`), want: []string{"POST /ssf/v1/subjects/add (addStreamSubject)", "no body"}},
		{name: "JSON Lines, line by line", method: "GET", path: "/api/v1/audit/export", token: "t",
			server: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/jsonl")
				fmt.Fprint(w, `{"index":0,"time":"2026-01-02T03:04:05Z","actor":"system","action":"a","outcome":"ok","prev":"AA=="}`+"\n"+
					`{"index":1,"time":"2026-01-02T03:04:05Z","actor":"system","action":"a","outcome":"maybe","prev":"AA=="}`+"\n")
			}, want: []string{"GET /api/v1/audit/export (exportAudit)", "outcome"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.server)
			defer srv.Close()
			rec := &recorder{}
			Do(rec, srv.Client(), tc.method, srv.URL+tc.path, tc.token, tc.body, nil)
			got := strings.Join(rec.errs, "\n")
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("the exchange keeps to the document, yet:\n%s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("the failure does not say %q:\n%s", w, got)
				}
			}
		})
	}
}

// A direct call through a checked client is checked, a call through Do with it once, and a
// benchmark harness's calls are not checked at all.
func TestCheckedTransportAndHarness(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"fine"}`)
	}))
	defer srv.Close()

	rec := &recorder{}
	c := &http.Client{Transport: Checked(rec, srv.Client().Transport)}
	resp, err := c.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"status":"fine"}` || len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "GET /healthz (healthz)") {
		t.Fatalf("direct call: body %q, failures %q", b, rec.errs)
	}
	rec.errs = nil
	Do(rec, c, "GET", srv.URL+"/healthz", "", nil, nil)
	if len(rec.errs) != 1 {
		t.Errorf("Do through a checked client failed the test %d times, want once: %q", len(rec.errs), rec.errs)
	}

	h := &harness{}
	if Checks(h) {
		t.Fatal("a harness without a name is checked")
	}
	Do(h, srv.Client(), "GET", srv.URL+"/healthz", "", nil, nil)
	if len(h.errs) != 0 {
		t.Errorf("a benchmark harness's call was checked: %q", h.errs)
	}
}
