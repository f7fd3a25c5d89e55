package mdmserver_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/halemdm/hale/internal/problem"
)

// A wrong method on a path that exists answers 405 with the methods the path accepts, as
// problem+json, before any authentication; a path that does not exist stays 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	env := newTestEnv(t)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"PATCH", "/api/v1/tokens", "GET, HEAD, POST"},
		{"PUT", "/api/v1/devices/d_123/lock", "POST"},
		{"POST", "/api/v1/devices/d_123", "GET, HEAD, DELETE"},
		{"GET", "/agent/v1/enroll", "POST"},
		{"DELETE", "/agent/v1/commands/c_1/result", "POST"},
		{"POST", "/ca/root.pem", "GET, HEAD"},
		{"PUT", "/access/v1/jwks.json", "GET, HEAD"},
		{"OPTIONS", "/ssf/v1/stream", "GET, HEAD, POST, PUT, PATCH, DELETE"},
	} {
		req, err := http.NewRequest(tc.method, env.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := env.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p problem.Details
		decodeErr := json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want 405, Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.allow)
			continue
		}
		if resp.Header.Get("Content-Type") != problem.ContentType || decodeErr != nil || p.Code != "method-not-allowed" ||
			p.Status != http.StatusMethodNotAllowed || p.RequestID == "" {
			t.Errorf("%s %s: %s %+v %v", tc.method, tc.path, resp.Header.Get("Content-Type"), p, decodeErr)
		}
	}
	for _, path := range []string{"/nope", "/api/v1/nope", "/agent/v1/enroll/extra"} {
		resp, err := env.Client.Get(env.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Allow") != "" {
			t.Errorf("GET %s: %d Allow %q, want 404", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}
