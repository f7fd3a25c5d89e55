package access

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/remediation"
)

func pastGrace(id string) *Decision {
	d := compliantDecision(id)
	d.StaleAt = t0.Add(24 * time.Hour)
	d.Posture = &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: t0}
	d.Verdict = policies.Verdict{Reasons: []policies.Reason{{Code: policies.CodeOSTooOld}},
		NoncompliantSince: t0.Add(-2 * time.Hour), GraceUntil: t0.Add(-time.Hour)}
	return d
}

func TestBreakGlassAllowsUntilExpiry(t *testing.T) {
	x := NewIndex()
	x.MarkLoaded()
	x.Put(pastGrace("d1"), t0)
	if body, allow := x.LookupJSON("d1", t0); allow {
		t.Fatalf("past grace allowed: %s", body)
	}
	g := &Grant{ID: "bg1", ExpiresAt: t0.Add(time.Hour), May: []string{policies.CodeOSTooOld}}
	x.SetBreakGlass("d1", g, t0)
	body, allow := x.LookupJSON("d1", t0.Add(time.Minute))
	var a Answer
	if err := json.Unmarshal(body, &a); err != nil || !allow || !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != "bg1" ||
		strings.Join(a.BreakGlass.Overrides, ",") != "noncompliant_past_grace,os_too_old" || !a.BreakGlass.ExpiresAt.Equal(g.ExpiresAt) {
		t.Fatalf("break-glass answer %s", body)
	}
	// A report meanwhile (the engine's Put) keeps the grant.
	x.Put(pastGrace("d1"), t0.Add(2*time.Minute))
	if _, allow := x.LookupJSON("d1", t0.Add(3*time.Minute)); !allow {
		t.Fatal("a Put dropped the grant")
	}
	// At expiry the cached answer is re-derived without any write: denied again.
	if body, allow := x.LookupJSON("d1", g.ExpiresAt); allow || strings.Contains(string(body), "break_glass") {
		t.Fatalf("answer at expiry: %s", body)
	}
	// A reason the use may not override denies, and so does a state no use ever overrides.
	x.SetBreakGlass("d1", &Grant{ID: "bg2", ExpiresAt: t0.Add(time.Hour), May: []string{policies.CodeReportStale}}, t0)
	if _, allow := x.LookupJSON("d1", t0); allow {
		t.Fatal("a use let through a reason it may not override")
	}
	locked := pastGrace("d1")
	locked.State = "locked"
	x.SetBreakGlass("d1", g, t0)
	x.Put(locked, t0)
	if a := x.Lookup("d1", t0); a.Allow || a.BreakGlass != nil {
		t.Fatalf("a locked device was let through: %+v", a)
	}
	x.SetBreakGlass("d1", nil, t0)
	if x.BreakGlass("d1") != nil {
		t.Fatal("grant not removed")
	}
	if refused := Overridable(x.Lookup("d1", t0), []string{policies.CodeOSTooOld}); strings.Join(refused, ",") != "device_locked" {
		t.Fatalf("Overridable = %v", refused)
	}
}

func TestRemediationHandler(t *testing.T) {
	x := NewIndex()
	x.MarkLoaded()
	x.Put(pastGrace("d1"), t0)
	x.now = func() time.Time { return t0 }
	h := RemediationHandler(x, remediation.HelpDesk{Name: "IT"})
	get := func(path, lang string) map[string]json.RawMessage {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.SetPathValue("id", strings.TrimPrefix(strings.SplitN(path, "?", 2)[0], "/access/v1/devices/"))
		if lang != "" {
			r.Header.Set("Accept-Language", lang)
		}
		w := httptest.NewRecorder()
		h(w, r)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := get("/access/v1/devices/d1", ""); m["remediation"] != nil {
		t.Fatal("remediation without being asked for")
	}
	for lang, want := range map[string]string{"es-MX": "Actualice el software", "en": "Update your device", "fr": "Update your device"} {
		var items []remediation.Item
		m := get("/access/v1/devices/d1", lang)
		if err := json.Unmarshal(m["remediation"], &items); err != nil || len(items) != 2 || items[1].Code != "os_too_old" ||
			!strings.HasPrefix(items[1].Title, want) || items[1].Platform != "ios" || m["grace_until"] == nil {
			t.Fatalf("%s: %s", lang, m["remediation"])
		}
	}
	var items []remediation.Item
	m := get("/access/v1/devices/nobody?remediation=1", "")
	if json.Unmarshal(m["remediation"], &items) != nil || len(items) != 1 || items[0].Contact != "IT" || items[0].StepsByPlatform == nil {
		t.Fatalf("unknown device: %s", m["remediation"])
	}
}
