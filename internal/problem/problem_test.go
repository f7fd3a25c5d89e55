package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	cases := []struct {
		name, ct, in string
		ok           bool
		status       int
	}{
		{"valid", "application/json", `{"name":"x"}`, true, 0},
		{"no content type", "", `{"name":"x"}`, true, 0},
		{"unknown field", "application/json", `{"name":"x","admin":true}`, false, 400},
		{"trailing data", "application/json", `{"name":"x"}{}`, false, 400},
		{"malformed", "application/json", `{"name":`, false, 400},
		{"form", "application/x-www-form-urlencoded", `name=x`, false, 415},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", 200) + `"}`, false, 413},
		{"too large after the value", "application/json", `{"name":"x"}` + strings.Repeat(" ", 200), false, 413},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/x", strings.NewReader(c.in))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		var b body
		if got := DecodeJSON(rec, req, 100, &b); got != c.ok {
			t.Errorf("%s: DecodeJSON = %v", c.name, got)
			continue
		}
		if c.ok {
			continue
		}
		var p Details
		if rec.Code != c.status || rec.Header().Get("Content-Type") != ContentType || json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != c.status || p.Code == "" {
			t.Errorf("%s: %d %s %s", c.name, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
}

func TestReadRoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set(RequestIDHeader, "req-1")
	NotFound(rec, httptest.NewRequest("GET", "/api/v1/devices/x", nil), "no device x")
	p := Read(rec.Result())
	if p.Status != http.StatusNotFound || p.Code != "not-found" || p.RequestID != "req-1" || p.Instance != "/api/v1/devices/x" {
		t.Fatalf("round trip: %+v", p)
	}
	// A body that is not a problem still becomes one, bounded.
	resp := &http.Response{StatusCode: 502, Header: http.Header{}, Body: http.NoBody}
	if p := Read(resp); p.Status != 502 || p.Code != "http-error" {
		t.Fatalf("non-problem: %+v", p)
	}
}
