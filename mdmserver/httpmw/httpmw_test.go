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
	mux.HandleFunc("GET /ok/{id}", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) == "" {
			t.Error("no request ID in context")
		}
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
	if rec.Header().Get("X-Request-Id") != "client-chosen-1" {
		t.Fatalf("request ID not echoed: %q", rec.Header().Get("X-Request-Id"))
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("GET", "/ok/d_3", nil)
	req.Header.Set("X-Request-Id", "bad id\nforged: line")
	h.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got == "" || strings.ContainsAny(got, " \n") {
		t.Fatalf("unsafe request ID kept: %q", got)
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
