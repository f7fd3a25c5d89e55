// Package httpmw holds the middleware every Hale HTTP request passes through: a request ID,
// panic recovery, an access log line, and Prometheus metrics labelled by route pattern.
//
// The request ID is always Hale's own, made for each request: it names the request in the
// response's X-Request-Id header, problem+json answers, logs and audit entries, so it must not
// repeat. A client's X-Request-Id is kept apart, bounded and sanitised, as the client request
// ID: useful for finding the request in the client's logs, worth nothing as an identifier.
package httpmw

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/randid"
)

type (
	requestIDKey       struct{}
	clientRequestIDKey struct{}
)

// RequestID returns Hale's request ID of ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// ClientRequestID returns the X-Request-Id the client sent with the request of ctx, as
// [SanitizeClientRequestID] keeps it, or "" when it sent none.
func ClientRequestID(ctx context.Context) string {
	id, _ := ctx.Value(clientRequestIDKey{}).(string)
	return id
}

// MaxClientRequestIDLen is how many bytes of a client's X-Request-Id are kept.
const MaxClientRequestIDLen = 128

// SanitizeClientRequestID makes a client's request ID safe to log and store: at most
// [MaxClientRequestIDLen] bytes, each byte outside printable ASCII (controls, spaces, anything
// non-ASCII) replaced by '?', so it cannot forge log lines or carry invisible text.
func SanitizeClientRequestID(v string) string {
	if len(v) > MaxClientRequestIDLen {
		v = v[:MaxClientRequestIDLen]
	}
	b := []byte(v)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// Metrics are the HTTP metrics of one server.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers Hale's HTTP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hale_http_requests_total",
			Help: "HTTP requests handled, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hale_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Wrap returns h with request IDs, recovery, access logging and (if m is not nil) metrics. The
// route label is the http.ServeMux pattern that matched, so metrics never carry device IDs.
func Wrap(h http.Handler, log *slog.Logger, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := randid.Hex(12)
		client := SanitizeClientRequestID(r.Header.Get(problem.RequestIDHeader))
		w.Header().Set(problem.RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		if client != "" {
			ctx = context.WithValue(ctx, clientRequestIDKey{}, client)
		}
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "handler panic", "request_id", id, "client_request_id", client,
					"panic", v, "stack", string(debug.Stack()))
				if !sw.wrote {
					problem.Internal(sw, r)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			elapsed := time.Since(start)
			if m != nil {
				m.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status())).Inc()
				m.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
			}
			attrs := []slog.Attr{slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", route),
				slog.String("path", r.URL.Path), slog.Int("status", sw.status()), slog.Int64("bytes", sw.bytes),
				slog.Duration("elapsed", elapsed), slog.String("remote", r.RemoteAddr)}
			if client != "" {
				attrs = append(attrs, slog.String("client_request_id", client))
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs...)
		}()
		h.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Status returns the status a handler has answered on w so far, for a decorator that runs
// after the handler (audit). It is 0 when w does not come from Wrap.
func Status(w http.ResponseWriter) int {
	for {
		switch v := w.(type) {
		case *statusWriter:
			return v.status()
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return 0
		}
	}
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush supports streaming responses (audit export, long polls).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
