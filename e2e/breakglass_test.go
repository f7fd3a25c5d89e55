package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver"
)

// TestExampleBackendBreakGlass runs the example messaging backend as a process in front of a
// device that its policy denies: the backend's 403 carries grace_until and, in the user's
// language, what to fix; the device's owner opens emergency access and the backend opens the
// session with the break_glass flag, and hears of it by a pushed event.
func TestExampleBackendBreakGlass(t *testing.T) {
	site := newBackendSite(t, t.TempDir())
	srv := startServer(t, site.allow, func(c *mdmserver.Config) { c.HelpDeskName = "Servicio de TI clínico" })
	it, accessTok := srv.token("it"), srv.token("access")
	srv.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\n"+
		"break_glass:\n  allowed: true\n  duration: 2h\n  overridable: [encryption_off]\n", 200, nil)
	srv.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	device, deviceID := enrollDevice(t, srv, it)
	hale := srv.mtls(device)
	var nonce struct{ Nonce string }
	apitest.Do(t, hale, "GET", srv.url+"/agent/v1/nonce", "", nil, &nonce)
	now := time.Now().UTC()
	off := map[string]any{"value": false, "source": "agent", "observed_at": now}
	on := map[string]any{"value": true, "source": "agent", "observed_at": now}
	if code := apitest.Do(t, hale, "POST", srv.url+"/agent/v1/report", "", map[string]any{"nonce": nonce.Nonce, "sequence": 1,
		"collected_at": now, "posture": map[string]any{"platform": "linux", "reported_at": now, "disk_encrypted": off, "swap_encrypted": on}}, nil); code != 200 {
		t.Fatalf("report: %d", code)
	}

	backend, _ := site.start(t, srv, accessTok, "--help-desk", "Servicio de TI clínico")
	toBackend := site.client(device)
	session := func() (int, map[string]json.RawMessage) {
		req, _ := http.NewRequest("POST", "https://"+site.addr+"/sessions", nil)
		req.Header.Set("Accept-Language", "es-MX,es;q=0.9,en;q=0.5")
		resp, err := toBackend.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]json.RawMessage
		json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	waitFor(t, 10*time.Second, "the backend to listen", func() bool { code, _ := session(); return code != 0 })

	// Denied (no grace in the policy): the problem carries the deadline and the remediation.
	code, denied := session()
	var items []struct{ Code, Lang, Title string }
	json.Unmarshal(denied["remediation"], &items)
	if code != http.StatusForbidden || denied["grace_until"] == nil || len(items) == 0 || items[len(items)-1].Code != "encryption_off" ||
		items[len(items)-1].Lang != "es" || !strings.HasPrefix(items[len(items)-1].Title, "Active el cifrado") {
		t.Fatalf("denial: %d %s\n%s", code, mustMarshal(denied), backend.output())
	}

	// The owner opens emergency access with the device's certificate.
	var use struct{ ID string }
	if code := apitest.Do(t, hale, "POST", srv.url+"/agent/v1/break-glass", "", `{"reason":"rapid response call, ward 7 bed 2"}`, &use); code != 201 {
		t.Fatalf("break-glass: %d", code)
	}
	waitFor(t, 10*time.Second, "the break-glass event at the backend", func() bool {
		return strings.Contains(backend.output(), "break_glass_started")
	})
	// The backend's cached decision was dropped by the event: the session opens with the flag.
	code, opened := session()
	var bg struct{ ID string }
	if code != http.StatusOK || json.Unmarshal(opened["break_glass"], &bg) != nil || bg.ID != use.ID {
		t.Fatalf("session under break-glass: %d %s\n%s", code, mustMarshal(opened), backend.output())
	}
	if deviceIDOf(opened) != deviceID {
		t.Fatalf("session for %q", deviceIDOf(opened))
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func deviceIDOf(m map[string]json.RawMessage) string {
	var id string
	json.Unmarshal(m["device_id"], &id)
	return id
}
