package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/problem"
)

func TestExitCodes(t *testing.T) {
	api := func(status int) error {
		return runError{&apiError{status: status, problem: problem.New(status, "x", "y")}}
	}
	cases := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("unknown command \"x\" for \"mdmctl\""), exitUsage}, // cobra's own
		{runError{errors.New("dial tcp: connection refused")}, exitError},
		{runError{usagef("bad")}, exitUsage},
		{runError{verifyError{errors.New("entry 3 changed")}}, exitVerify},
		{runError{codedError{exitAuth, errors.New("no token")}}, exitAuth},
		{api(400), exitUsage}, {api(401), exitAuth}, {api(403), exitAuth}, {api(404), exitNotFound},
		{api(409), exitConflict}, {api(412), exitConflict}, {api(422), exitConflict},
		{api(429), exitError}, {api(500), exitError}, {api(503), exitError},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	r := cli{env: map[string]string{}}.ok(t, "--help")
	for _, want := range []string{"Exit status", "6  verification failed", "HALE_TOKEN", "drill", "wipe", "audit"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestProblemOutput(t *testing.T) {
	p := problem.New(404, "not-found", "no device d_1\x1b[2J")
	p.RequestID = "req-9"
	e := &apiError{status: 404, problem: p}
	if got := e.Error(); got != "Not Found: no device d_1 [2J (request req-9)" {
		t.Fatalf("problem message: %q", got)
	}
}

func TestNormalizeServer(t *testing.T) {
	for in, want := range map[string]string{
		"https://mdm.example.org:8443/": "https://mdm.example.org:8443",
		"https://mdm.example.org/hale":  "https://mdm.example.org/hale",
		"http://127.0.0.1:8080":         "http://127.0.0.1:8080",
		"http://localhost:8080":         "http://localhost:8080",
	} {
		if got, err := normalizeServer(in); err != nil || got != want {
			t.Errorf("normalizeServer(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"mdm.example.org", "ftp://x", "http://mdm.example.org", "https://u:p@x", "https://x/?q=1", ""} {
		if _, err := normalizeServer(bad); err == nil {
			t.Errorf("normalizeServer(%q) accepted", bad)
		}
	}
}

func TestWhen(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"":                          "",
		"24h":                       "2026-11-28T12:00:00Z",
		"2026-11-01":                "2026-11-01T00:00:00Z",
		"2026-11-01T10:00:00+01:00": "2026-11-01T09:00:00Z",
	} {
		if got, err := parseWhen(in, now); err != nil || got != want {
			t.Errorf("parseWhen(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := parseWhen("-5h", now); err == nil {
		t.Error("negative duration accepted")
	}
}

func TestBoundedBody(t *testing.T) {
	read := func(body string, limit int64) (string, error) {
		b, err := io.ReadAll(&boundedBody{r: io.NopCloser(strings.NewReader(body)), left: limit})
		return string(b), err
	}
	if got, err := read("abcd", 4); err != nil || got != "abcd" {
		t.Errorf("exactly at the limit: %q %v", got, err)
	}
	if _, err := read("abcde", 4); err == nil {
		t.Error("a body past the limit was read without error")
	}
}

// TestShow checks the helper most commands print through: -o json prints the server's bytes
// (fields mdmctl does not know included) without decoding them, a table gets the decoded value,
// and no request is sent without a token.
func TestShow(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/things" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"x\u001b","extra":[1,2]}`)
	}))
	defer srv.Close()

	type thing struct{ Name string }
	run := func(output, token string) (string, []thing, error) {
		var out bytes.Buffer
		a := newApp()
		a.stdout, a.getenv = &out, func(k string) string {
			if k == "HALE_CONFIG" {
				return filepath.Join(t.TempDir(), "none.json")
			}
			return ""
		}
		a.server, a.token, a.output = srv.URL, token, output
		var got []thing
		err := show(a, context.Background(), http.MethodPost, "/api/v1/things", map[string]int{"n": 1}, func(w io.Writer, v thing) error {
			got = append(got, v)
			return fields(w, "name", v.Name)
		})
		return out.String(), got, err
	}

	out, got, err := run("json", "tok")
	if err != nil || got != nil || !strings.Contains(out, `"extra": [`) {
		t.Errorf("-o json: %q, rendered %v, %v; want the server's JSON, not rendered", out, got, err)
	}
	out, got, err = run("table", "tok")
	if err != nil || len(got) != 1 || got[0].Name != "x\x1b" || out != "name: x \n" {
		t.Errorf("table: %q, rendered %v, %v; want the decoded value, sanitized", out, got, err)
	}
	before := calls.Load()
	if _, _, err := run("table", ""); exitCode(err) != exitAuth || calls.Load() != before {
		t.Errorf("without a token: %v (exit %d), %d requests; want exit %d and none", err, exitCode(err), calls.Load()-before, exitAuth)
	}
}

func TestTableOf(t *testing.T) {
	var out bytes.Buffer
	err := tableOf(&out, []string{"A", "B"}, []int{1, 22}, func(n int) []string {
		return []string{strings.Repeat("x", n%10), ""}
	})
	if want := "A   B\nx   -\nxx  -\n"; err != nil || out.String() != want {
		t.Errorf("tableOf = %q, %v; want %q", out.String(), err, want)
	}
}
