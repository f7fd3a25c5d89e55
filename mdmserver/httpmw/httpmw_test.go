package httpmw

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWrap(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom/{id}", func(http.ResponseWriter, *http.Request) { panic("handler bug") })
	var clientIDs []string
	mux.HandleFunc("GET /ok/{id}", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) == "" || RequestID(r.Context()) != w.Header().Get("X-Request-Id") {
			t.Error("no request ID in context, or not the one answered")
		}
		clientIDs = append(clientIDs, ClientRequestID(r.Context()))
	})
	h := Wrap(mux, slog.New(slog.DiscardHandler), m)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom/d_1", nil))
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("panic answered %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/ok/d_2", nil)
	req.Header.Set("X-Request-Id", "client-chosen-1")
	h.ServeHTTP(rec, req)
	// Hale's own ID is answered, never the client's (issue 23.4); the client's is kept apart.
	if got := rec.Header().Get("X-Request-Id"); got == "" || got == "client-chosen-1" || clientIDs[0] != "client-chosen-1" {
		t.Fatalf("request ID %q answered for a client's %q (kept as %q)", got, "client-chosen-1", clientIDs[0])
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("GET", "/ok/d_3", nil)
	req.Header.Set("X-Request-Id", "bad id\nforged: line")
	h.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got == "" || strings.ContainsAny(got, " \n") {
		t.Fatalf("unsafe request ID kept: %q", got)
	}
	if clientIDs[1] != "bad?id?forged:?line" {
		t.Fatalf("client request ID kept as %q", clientIDs[1])
	}
	// Metrics are labelled by route pattern, never by the device ID in the path.
	if n := testutil.ToFloat64(m.requests.WithLabelValues("GET /ok/{id}", "GET", "200")); n != 2 {
		t.Fatalf("requests for GET /ok/{id} = %v", n)
	}
	if n := testutil.ToFloat64(m.requests.WithLabelValues("GET /boom/{id}", "GET", "500")); n != 1 {
		t.Fatalf("panics counted %v", n)
	}
}

// Status sees what a handler answered through Wrap's writer, also behind another wrapper.
func TestStatus(t *testing.T) {
	var seen []int
	after := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			seen = append(seen, Status(w))
		})
	}
	mux := http.NewServeMux()
	mux.Handle("GET /created", after(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })))
	mux.Handle("GET /written", after(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })))
	mux.Handle("GET /silent", after(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	h := Wrap(mux, slog.New(slog.DiscardHandler), nil)
	for _, p := range []string{"/created", "/written", "/silent"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if want := []int{201, 200, 200}; !slices.Equal(seen, want) {
		t.Fatalf("Status saw %v, want %v", seen, want)
	}
	if got := Status(httptest.NewRecorder()); got != 0 {
		t.Fatalf("Status of a plain writer = %d, want 0", got)
	}
}

// A client's request ID is kept to 128 bytes of printable ASCII; nothing else gets through.
func TestSanitizeClientRequestID(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"abc-123:x.y_z":          "abc-123:x.y_z",
		"a b\r\nc":               "a?b??c",
		"\u202eevil":             "???evil",
		strings.Repeat("x", 200): strings.Repeat("x", MaxClientRequestIDLen),
	} {
		if got := SanitizeClientRequestID(in); got != want {
			t.Errorf("SanitizeClientRequestID(%q) = %q, want %q", in, got, want)
		}
	}
}
