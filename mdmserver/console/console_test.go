package console

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// The device list's query: filters are bounded, the limit clamped, unknown states and access
// values refused; nothing crashes on any input.
func FuzzDeviceQuery(f *testing.F) {
	for _, s := range []string{"", "state=active&limit=10", "limit=0", "limit=-3", "limit=99999", "state=bogus", "access=maybe",
		"q=" + strings.Repeat("x", 300), "cursor=djE6ZF8x&group=ward", "%zz", "unseen=7", "unseen=0", "compliance=noncompliant"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/console/devices", nil)
		r.URL.RawQuery = raw
		q, bad := parseDeviceQuery(r)
		if bad != "" {
			return
		}
		if q.Limit < 1 || q.Limit > maxPage {
			t.Fatalf("limit %d from %q", q.Limit, raw)
		}
		if q.State != "" && !inventory.State(q.State).Valid() {
			t.Fatalf("state %q accepted", q.State)
		}
		for _, s := range []string{q.State, q.Group, q.Owner, q.Platform, q.Access, q.Reason, q.Q, q.Cursor} {
			if len(s) > 256 {
				t.Fatalf("a %d-byte filter accepted", len(s))
			}
		}
		if q.Access != "" && q.Access != "allowed" && q.Access != "denied" {
			t.Fatalf("access %q accepted", q.Access)
		}
		if q.Unseen != "" && (q.unseenDays < 1 || q.unseenDays > 3650) {
			t.Fatalf("unseen %q accepted as %d days", q.Unseen, q.unseenDays)
		}
	})
}

// The audit page's query: start and limit are whole numbers in range, filters bounded.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{"", "start=5&limit=20", "start=-1", "limit=0", "limit=100000", "action=device.wipe", "start=9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, bad := parseAuditQuery(v)
		if bad != "" {
			return
		}
		if q.Start < 0 || q.Limit < 1 || q.Limit > maxPage || len(q.Actor) > 256 || len(q.Action) > 256 || len(q.Target) > 256 {
			t.Fatalf("%+v accepted from %q", q, raw)
		}
	})
}

// Every claim of a posture is listed with its source and age, whatever its value's type, and
// nothing else is.
func TestClaims(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: now,
		DiskEncrypted: policies.Observe(true, policies.ProvenanceMDM, now.Add(-90*time.Second)),
		OS:            policies.Observe(policies.OSInfo{Version: "17.5"}, policies.ProvenanceAttested, now.Add(-time.Hour)),
	}
	got := claims(p, now)
	if len(got) != 2 || got[0].Name != "disk_encrypted" || got[0].Value != "true" || got[0].Source != "mdm" || got[0].Age != "1m30s" ||
		got[1].Name != "os" || !strings.Contains(got[1].Value, "17.5") || got[1].Age != "1h0m0s" {
		t.Fatalf("claims: %+v", got)
	}
	if claims(nil, now) != nil {
		t.Fatal("claims of no posture")
	}
}

// A session ends at its idle timeout and at its lifetime, whichever comes first.
func TestExpired(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := &Console{idle: 15 * time.Minute, lifetime: time.Hour, sessions: newSessions(10)}
	ss, _, err := c.sessions.create("id", "token", t0, c.expiredAt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		seen, now time.Duration
		want      bool
	}{{0, 14 * time.Minute, false}, {0, 15 * time.Minute, true}, {50 * time.Minute, 59 * time.Minute, false}, {58 * time.Minute, 60 * time.Minute, true}} {
		c.sessions.touch(context.Background(), ss, t0.Add(tc.seen))
		if got := c.expired(ss, t0.Add(tc.now)); got != tc.want {
			t.Errorf("seen at +%v, now +%v: expired %v, want %v", tc.seen, tc.now, got, tc.want)
		}
	}
	// A full table refuses, after sweeping what has expired.
	c.sessions.max = 1
	if _, _, err := c.sessions.create("id2", "token", t0.Add(10*time.Minute), c.expiredAt); err != errTooManySessions {
		t.Fatalf("second session in a table of one: %v", err)
	}
	if _, _, err := c.sessions.create("id2", "token", t0.Add(2*time.Hour), c.expiredAt); err != nil {
		t.Fatalf("after the first expired: %v", err)
	}
}

// A device row's values are escaped: an owner or host name is text, never markup, and the link
// stays a link to the device.
func TestRowHTMLEscapes(t *testing.T) {
	row := deviceRow{ID: `d_1"><script>x</script>`, Label: `<img src=x onerror=alert(1)>`, PlatformOS: "agent/linux",
		Owner: `a&b "q" 'r'`, Group: "<g>", State: "active", ReasonText: "<b>", Seen: "—"}
	var b strings.Builder
	writeRowHTML(&b, &row, true)
	got := b.String()
	for _, bad := range []string{"<script", "<img", "<g>", "<b>", `"q"`} {
		if strings.Contains(got, bad) {
			t.Fatalf("%q unescaped in %s", bad, got)
		}
	}
	if !strings.Contains(got, `href="/console/devices/d_1%22%3E%3Cscript%3Ex%3C%2Fscript%3E"`) || !strings.Contains(got, "a&amp;b &#34;q&#34; &#39;r&#39;") {
		t.Fatalf("row: %s", got)
	}
}
