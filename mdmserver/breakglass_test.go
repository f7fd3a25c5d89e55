package mdmserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/posture"
)

// breakGlassPolicy denies an unencrypted agent after an hour's grace, and lets its owner open
// emergency access once a day for up to an hour past that.
const breakGlassPolicy = `
encryption:
  required: true
reporting:
  max_age: 4h
grace: 1h
break_glass:
  allowed: true
  duration: 1h
  max_uses: 1
  per: 24h
  overridable: [encryption_off, report_stale]
`

// caepLog is a backend's receiver: it verifies each SET as posture.Receiver does and keeps the
// events.
type caepLog struct {
	mu  sync.Mutex
	got []receivedEvent
	rx  *posture.Receiver
}

type receivedEvent struct {
	typ string
	ev  posture.CAEPEvent
}

func (env *testEnv) caepReceiver() *caepLog {
	env.t.Helper()
	var conf struct{ Issuer string }
	env.call("GET", "/.well-known/ssf-configuration", "", nil, &conf)
	l := &caepLog{}
	l.rx = posture.NewReceiver(posture.RemoteJWKS(env.URL+"/access/v1/jwks.json", env.Client), "messaging", conf.Issuer,
		posture.WithOnEvent(func(_ context.Context, _ posture.SETClaims, typ string, ev posture.CAEPEvent) {
			l.mu.Lock()
			l.got = append(l.got, receivedEvent{typ, ev})
			l.mu.Unlock()
		}))
	return l
}

// waitEvent polls the stream, delivering every SET to the receiver, until one with reason code
// arrives.
func (env *testEnv) waitEvent(l *caepLog, token, streamID, code string) posture.CAEPEvent {
	env.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, sets := env.pollSETs(token, streamID, `{"returnImmediately":true}`)
		var acks []string
		for jti, set := range sets {
			if err := l.rx.Deliver(context.Background(), set); err != nil {
				env.t.Fatalf("a SET did not verify: %v", err)
			}
			acks = append(acks, jti)
		}
		if len(acks) > 0 {
			env.pollSETs(token, streamID, string(mustJSON(env.t, map[string]any{"ack": acks, "returnImmediately": true})))
		}
		l.mu.Lock()
		for _, r := range l.got {
			if r.ev.ReasonCode == code {
				l.mu.Unlock()
				return r.ev
			}
		}
		l.mu.Unlock()
	}
	env.t.Fatalf("no event with reason code %s", code)
	return posture.CAEPEvent{}
}

// accessIn is the access answer asked for in the user's language.
func (env *testEnv) accessIn(token, id, lang string) access.Answer {
	env.t.Helper()
	req, _ := http.NewRequest("GET", env.URL+"/access/v1/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept-Language", lang)
	resp, err := env.Client.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	var a access.Answer
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&a) != nil {
		env.t.Fatalf("access %s: %d", id, resp.StatusCode)
	}
	return a
}

// breakGlass asks for emergency access with an agent's certificate.
func (env *testEnv) breakGlass(agent *http.Client, body string, out any) int {
	env.t.Helper()
	return apitest.Do(env.t, agent, "POST", env.URL+"/agent/v1/break-glass", "", body, out)
}

// A device past grace is denied with what to fix in English and Spanish; its owner opens
// emergency access and is allowed at once, with the flag on the answer, the posture token and
// the SDK's decision, and the backend hears of it; it ends by itself at expiry (denied again,
// event sent); refusals change nothing; every use is reviewed and on the audit record.
func TestBreakGlassEndToEnd(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now), mdmserver.WithTimers(clock.AfterFunc)},
		func(c *mdmserver.Config) { c.HelpDeskName, c.HelpDeskPhone = "Clinical IT", "+1 555 0100" })
	it, accessTok := env.token("it"), env.token("access")
	sec1, sec2 := env.tokenAs(env.Admin, "sec-one", "security", "sam"), env.tokenAs(env.Admin, "sec-two", "security", "rita")
	if code := env.call("PUT", "/api/v1/policies/bg", it, []byte(breakGlassPolicy), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	env.assignDefault(it, "bg")
	stream := env.stream(accessTok, `{"aud":"messaging"}`)
	backend := env.caepReceiver()

	id, agent := env.enrolledAgent()
	env.agentReport(agent, false)
	if a := env.access(accessTok, id.DeviceID); !a.Allow || !a.InGrace {
		t.Fatalf("in grace: %+v", a)
	}
	clock.Advance(61 * time.Minute)

	// Past grace: denied, with what to fix, in the user's language, and the deadline.
	for lang, title := range map[string]string{"es-ES,es;q=0.9": "Active el cifrado del disco", "en-GB": "Turn on disk encryption"} {
		a := env.accessIn(accessTok, id.DeviceID, lang)
		if a.Allow || a.GraceUntil.IsZero() || strings.Join(a.ReasonCodes(), ",") != "noncompliant_past_grace,encryption_off" {
			t.Fatalf("past grace: %+v", a)
		}
		if len(a.Remediation) != 2 || a.Remediation[1].Title != title || a.Remediation[1].Platform != "linux" ||
			len(a.Remediation[1].Steps) == 0 || !a.Remediation[1].UserFixable {
			t.Fatalf("%s remediation: %+v", lang, a.Remediation)
		}
	}

	// Refusals change nothing: no reason, too long, another channel's role.
	for body, want := range map[string]int{`{}`: 400, `{"reason":"help"}`: 400, `{"reason":"code blue in bay 4, on call","duration":"2h"}`: 400,
		`{"reason":"code blue in bay 4, on call","duration":"soon"}`: 400, `{"reason":"code blue","surprise":1}`: 400} {
		if code := env.breakGlass(agent, body, nil); code != want {
			t.Fatalf("%s: %d, want %d", body, code, want)
		}
	}
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/break-glass", it, []byte(`{"reason":"code blue in bay 4, on call"}`), nil); code != 403 {
		t.Fatalf("an IT token granted break-glass: %d", code)
	}
	if a := env.access(accessTok, id.DeviceID); a.Allow {
		t.Fatal("a refused request let the device through")
	}

	// The owner opens emergency access: allowed at once, with the flag and the expiry.
	var use api.BreakGlassUse
	if code := env.breakGlass(agent, `{"reason":"code blue in bay 4, need the on-call team now"}`, &use); code != 201 {
		t.Fatalf("break-glass: %d", code)
	}
	if use.Person != "dr.grey@example.org" || use.Channel != "device" || !use.Active || use.ExpiresAt.Sub(clock.Now()) != time.Hour {
		t.Fatalf("use %+v", use)
	}
	a := env.access(accessTok, id.DeviceID)
	if !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != use.ID || strings.Join(a.BreakGlass.Overrides, ",") != "noncompliant_past_grace,encryption_off" {
		t.Fatalf("after break-glass: %+v", a)
	}
	started := env.waitEvent(backend, accessTok, stream.StreamID, posture.EventReasonBreakGlassStarted)
	if started.BreakGlass == nil || started.BreakGlass.ID != use.ID || started.CurrentStatus != "not-compliant" {
		t.Fatalf("start event %+v", started)
	}

	// The posture token carries it and expires with it; the backend's SDK sees the flag.
	var tok api.PostureToken
	if code := apitest.Do(t, agent, "POST", env.URL+"/access/v1/token", "", nil, &tok); code != 200 || tok.ExpiresAt.After(use.ExpiresAt) {
		t.Fatalf("token: %d %+v", code, tok)
	}
	client, err := posture.NewClient(env.URL, posture.WithHTTPClient(env.Client), posture.WithBearerToken(accessTok))
	if err != nil {
		t.Fatal(err)
	}
	verifier := posture.NewVerifier(client.Keys()) // tokens are issued on the wall clock
	gate := &posture.Gate{Verifier: verifier, Client: client}
	got, err := gate.Authorize(context.Background(), posture.Presented{Token: tok.Token, Peer: leafOf(t, id.CertificateChain)})
	if err != nil || got.Decision.BreakGlass == nil || got.Decision.BreakGlass.ID != use.ID || len(got.Decision.Remediation) != 2 {
		t.Fatalf("backend gate: %+v %v", got.Decision, err)
	}
	live, err := client.Device(context.Background(), id.DeviceID)
	if err != nil || !live.Allow || live.BreakGlass == nil {
		t.Fatalf("live decision %+v %v", live, err)
	}

	// A second use inside the limit is refused: the same device while in force, and another
	// device of the same owner.
	if code := env.breakGlass(agent, `{"reason":"code blue in bay 4, again please"}`, nil); code != 409 {
		t.Fatalf("second use while in force: %d", code)
	}
	id2, agent2 := env.enrolledAgent()
	env.agentReport(agent2, false)
	var prob struct{ Code string }
	if code := env.breakGlass(agent2, `{"reason":"code blue, other phone of mine"}`, &prob); code != 403 {
		// In grace still: it is allowed, so nothing to open.
		if code != 409 {
			t.Fatalf("second device in grace: %d %+v", code, prob)
		}
	}
	clock.Advance(61 * time.Minute) // past its grace (and past the first use's expiry, below)

	// At expiry: denied again at once, and the end event arrives.
	if a := env.access(accessTok, id.DeviceID); a.Allow || a.BreakGlass != nil {
		t.Fatalf("after expiry: %+v", a)
	}
	env.waitEvent(backend, accessTok, stream.StreamID, posture.EventReasonBreakGlassEnded)
	if code := env.breakGlass(agent2, `{"reason":"code blue, other phone of mine"}`, &prob); code != 429 || prob.Code != "break-glass-limit" {
		t.Fatalf("second use inside the limit: %d %+v", code, prob)
	}

	// A locked device's break-glass is refused with a clear reason, by its owner and by security.
	id3, agent3 := env.enrolledAgent()
	env.agentReport(agent3, true)
	if code := env.call("POST", "/api/v1/devices/"+id3.DeviceID+"/lock", sec1, []byte(`{"reason":"left on the bus"}`), nil); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	var refused struct {
		Code    string
		Reasons []posture.Reason
	}
	if code := env.call("POST", "/api/v1/devices/"+id3.DeviceID+"/break-glass", sec1, []byte(`{"reason":"code blue in bay 4, on call"}`), &refused); code != 403 ||
		refused.Code != "break-glass-not-overridable" || len(refused.Reasons) == 0 || refused.Reasons[0].Code != "device_locked" {
		t.Fatalf("locked device: %d %+v", code, refused)
	}

	// Review: overdue after a day; its own granter or user may not review; approve, once.
	clock.Advance(23 * time.Hour)
	var list api.BreakGlassList
	if code := env.call("GET", "/api/v1/break-glass?unreviewed=true", sec1, nil, &list); code != 200 || len(list.Uses) != 1 ||
		list.Uses[0].ID != use.ID || !list.Uses[0].Overdue || list.Uses[0].EndReason != "expired" {
		t.Fatalf("overdue: %d %+v", code, list)
	}
	var reviewed api.BreakGlassUse
	if code := env.call("POST", "/api/v1/break-glass/"+use.ID+"/review", sec1, []byte(`{"decision":"approved","note":"code blue confirmed"}`), &reviewed); code != 200 ||
		reviewed.Review == nil || reviewed.Review.By != "sam" {
		t.Fatalf("review: %d %+v", code, reviewed)
	}
	if code := env.call("POST", "/api/v1/break-glass/"+use.ID+"/review", sec2, []byte(`{"decision":"revoked"}`), nil); code != 409 {
		t.Fatalf("second review: %d", code)
	}

	// A day on, security grants one for the second device; a second security person revokes it:
	// denied at once, event sent.
	var granted api.BreakGlassUse
	if code := env.call("POST", "/api/v1/devices/"+id2.DeviceID+"/break-glass", sec2, []byte(`{"reason":"clinician's phone died mid-shift","duration":"30m"}`), &granted); code != 201 ||
		granted.GrantedBy != "rita" || granted.Channel != "security" {
		t.Fatalf("grant: %d %+v", code, granted)
	}
	if a := env.access(accessTok, id2.DeviceID); !a.Allow || a.BreakGlass == nil {
		t.Fatalf("granted: %+v", a)
	}
	if code := env.call("POST", "/api/v1/break-glass/"+granted.ID+"/review", sec2, []byte(`{"decision":"revoked"}`), &prob); code != 403 || prob.Code != "break-glass-self-review" {
		t.Fatalf("granter reviewed own grant: %d %+v", code, prob)
	}
	if code := env.call("POST", "/api/v1/break-glass/"+granted.ID+"/review", sec1, []byte(`{"decision":"revoked","note":"not an emergency"}`), &reviewed); code != 200 ||
		reviewed.EndReason != "revoked" || reviewed.Active {
		t.Fatalf("revoke: %d %+v", code, reviewed)
	}
	if a := env.access(accessTok, id2.DeviceID); a.Allow {
		t.Fatalf("revoked use still lets the device through: %+v", a)
	}

	// All of it on the audit record.
	var actions []string
	for _, e := range append(env.auditEntries(id.DeviceID), env.auditEntries(id2.DeviceID)...) {
		if strings.HasPrefix(e.Action, "break_glass.") {
			actions = append(actions, e.Action+"/"+e.Outcome)
		}
	}
	want := "break_glass.start/ok,break_glass.end/ok,break_glass.review/ok,break_glass.start/ok,break_glass.review/ok,break_glass.end/ok"
	if strings.Join(actions, ",") != want {
		t.Fatalf("audit %v, want %s", actions, want)
	}
}
