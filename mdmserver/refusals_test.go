package mdmserver_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/audit"
)

// Anonymous refusals on the enrollment endpoints (400, 401, the limiter's 429) are counted in
// metrics and logged each, but audited once per source and window, as one entry with the count:
// a flood must not write one fsynced audit entry per request. A window still open at shutdown
// is written then.
func TestAnonymousEnrollRefusalsAuditedOncePerSource(t *testing.T) {
	// The default rate (1/s) refills the bucket while a loaded machine runs the 60 requests
	// below; at one token per 1,000 s the counts are exact however slow the run.
	env := newTestEnv(t, func(c *mdmserver.Config) { c.EnrollRate = 0.001 })
	env.uploadPushCert() // without one, a profile fetch is 409 before the token is looked at
	badToken := env.URL + "/enroll/apple/hale_enr_" + strings.Repeat("0", 64)
	for range 10 { // burst 20: these ten and the first ten below get through to be refused
		if code := env.call("POST", "/agent/v1/enroll", "", []byte(`{}`), nil); code != http.StatusBadRequest {
			t.Fatalf("invalid agent enrollment: %d", code)
		}
	}
	codes := map[int]int{}
	for range 50 {
		resp, _ := env.get(badToken)
		codes[resp.StatusCode]++
	}
	if codes[http.StatusUnauthorized] != 10 || codes[http.StatusTooManyRequests] != 40 {
		t.Fatalf("profile fetches answered %v, want 10×401 and 40×429", codes)
	}

	var anon struct{ Entries []audit.Entry }
	env.call("GET", "/api/v1/audit?actor=anonymous", env.Admin, nil, &anon)
	if len(anon.Entries) != 0 {
		t.Fatalf("%d audit entries written during the window, want none until it closes: %+v", len(anon.Entries), anon.Entries[0])
	}
	m := apitest.Metrics(t, env.Client, env.URL+"/metrics")
	for sample, want := range map[string]float64{
		`hale_enroll_refusals_total{endpoint="agent",reason="invalid_request"}`:      10,
		`hale_enroll_refusals_total{endpoint="apple_profile",reason="unknown"}`:      10,
		`hale_enroll_refusals_total{endpoint="apple_profile",reason="rate_limited"}`: 40,
	} {
		if m[sample] != want {
			t.Errorf("%s = %v, want %v", sample, m[sample], want)
		}
	}

	// Shutdown writes the open window: one entry for the 60 refusals.
	env.Restart()
	refused := func() []audit.Entry {
		var list struct{ Entries []audit.Entry }
		env.call("GET", "/api/v1/audit?action=enrollment.refused", env.Admin, nil, &list)
		return list.Entries
	}
	entries := refused()
	if len(entries) != 1 {
		t.Fatalf("%d enrollment.refused entries after shutdown, want 1: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Actor != "anonymous" || e.Source != "127.0.0.1" || e.Outcome != audit.OutcomeDenied || e.Details["count"] != "60" ||
		e.Details["reasons"] != "invalid_request=10,rate_limited=40,unknown=10" || e.Details["endpoints"] != "agent=10,apple_profile=50" ||
		e.Details["window_start"] == "" || e.Details["window_end"] == "" || e.Details["first_request_id"] == "" {
		t.Fatalf("entry %+v", e)
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Details["window_end"]); err != nil {
		t.Errorf("window_end: %v", err)
	}
	if all := func() int {
		var list struct{ Entries []audit.Entry }
		env.call("GET", "/api/v1/audit?actor=anonymous", env.Admin, nil, &list)
		return len(list.Entries)
	}(); all != 1 {
		t.Errorf("%d anonymous entries, want the one summary", all)
	}

	// While serving, a window is written once it closes.
	for range 3 {
		env.get(badToken)
	}
	env.EnrollGateForTest().AuditDue(time.Now())
	if n := len(refused()); n != 1 {
		t.Fatalf("a window was written before it closed: %d entries", n)
	}
	env.EnrollGateForTest().AuditDue(time.Now().Add(env.EnrollGateForTest().Window()))
	if entries := refused(); len(entries) != 2 || entries[1].Details["count"] != "3" || entries[1].Details["reasons"] != "unknown=3" {
		t.Fatalf("after the window closed: %+v", entries)
	}
}
