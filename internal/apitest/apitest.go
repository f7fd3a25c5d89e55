// Package apitest sends JSON requests to Hale's HTTP APIs from tests: the one request helper
// the server's, the end-to-end and the benchmark tests share. In tests it also holds every
// exchange to Hale's OpenAPI document (CheckExchange), so the document cannot drift from the
// code.
package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// TB is the part of testing.TB Do uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Do sends a request with c and returns the status. body is sent as JSON ([]byte and string
// as they are; nil sends none); token, when not empty, goes in a bearer Authorization header;
// a JSON answer is decoded into out when out is not nil, and any answer is copied as it is
// into out when out is a *[]byte.
//
// A request that got no answer returns -1 rather than failing the test: a refused handshake
// is what some tests expect. An error status without application/problem+json fails the test,
// since every Hale error is one, and so does an exchange off the OpenAPI document
// (CheckExchange) when t is a test: see Checks.
func Do(t TB, c *http.Client, method, url, token string, body, out any) int {
	t.Helper()
	var sent []byte
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		sent, rd = b, bytes.NewReader(b)
	case string:
		sent, rd = []byte(b), strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("%s %s: encode body: %v", method, url, err)
		}
		sent, rd = j, bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if Checks(t) && !isChecked(c) {
		if err := CheckExchange(req, sent, resp, b); err != nil {
			t.Errorf("%s %s: %v", method, url, err)
		}
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s %s: error %d is not problem+json: %s", method, url, resp.StatusCode, b)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
	} else if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, b, err)
		}
	}
	return resp.StatusCode
}

// Must is Do for a call that must answer want: otherwise it fails the test with the answer. A
// JSON answer is decoded into out when out is not nil.
func Must(t TB, c *http.Client, method, url, token string, body any, want int, out any) {
	t.Helper()
	var raw json.RawMessage
	if code := Do(t, c, method, url, token, body, &raw); code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, code, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
}
