package mdmserver_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
)

// An Apple device reports only when asked. The server asks a device again once its newest
// report is a reporting interval old (a third of max_age), so a healthy iPhone never turns
// stale; a device that does not answer is asked once, not on every pass.
func TestApplePostureRefreshed(t *testing.T) {
	clock := testclock.New(time.Now().UTC())
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithClock(clock.Now)})
	env.uploadPushCert()
	it, accessTok := env.token("it"), env.token("access")
	if code := env.call("PUT", "/api/v1/policies/fresh", it, []byte("encryption:\n  required: true\nreporting:\n  max_age: 15m\n"), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	env.assignDefault(it, "fresh")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone := env.scepDevice(ctx, applesim.WithState(applesim.IOSState()))
	if err := phone.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	id := phone.Certificate().Subject.CommonName
	apple := env.AppleForTest()

	// Not answering yet (no push loop): its enrollment queries wait, so nothing more is queued.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var list struct{ Commands []json.RawMessage }
		env.call("GET", "/api/v1/devices/"+id+"/commands", env.Admin, nil, &list)
		if len(list.Commands) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the enrollment's posture queries were not queued: %d", len(list.Commands))
		}
	}
	clock.Advance(6 * time.Minute)
	if n, err := apple.RefreshDue(ctx); err != nil || n != 0 {
		t.Fatalf("with the enrollment's queries waiting: asked %d (%v), want 0", n, err)
	}
	go func() { _ = phone.RunPushLoop(ctx, env.APNs) }()
	env.waitAccess(accessTok, id, "compliant", func(a access.Answer) bool { return a.Compliant })
	// Compliant comes with the first answers; the last of the enrollment's queries may still be
	// on its way, and a query waiting keeps RefreshDue from asking again.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var list struct{ Commands []struct{ State string } }
		env.call("GET", "/api/v1/devices/"+id+"/commands", env.Admin, nil, &list)
		answered := 0
		for _, c := range list.Commands {
			if c.State == "acknowledged" {
				answered++
			}
		}
		if answered == len(list.Commands) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the enrollment's queries were not all answered: %+v", list.Commands)
		}
	}

	// Fresh: nothing to ask. A reporting interval (5m) later: asked once, and it answers.
	if n, _ := apple.RefreshDue(ctx); n != 0 {
		t.Fatalf("fresh device asked again (%d)", n)
	}
	clock.Advance(14 * time.Minute)
	asked := clock.Now()
	if n, err := apple.RefreshDue(ctx); err != nil || n != 1 {
		t.Fatalf("due device: asked %d (%v), want 1", n, err)
	}
	a := env.waitAccess(accessTok, id, "reported again", func(a access.Answer) bool {
		return a.Posture != nil && !a.Posture.ReportedAt.Before(asked)
	})
	// Past the old report's max_age, the new one keeps it allowed and fresh.
	clock.Advance(2 * time.Minute)
	a = env.access(accessTok, id)
	for _, r := range a.Reasons {
		if r.Code == policies.CodeReportStale || r.Code == policies.CodeClaimStale {
			t.Fatalf("stale after the refresh: %+v", a.Reasons)
		}
	}
	if !a.Allow || !a.Compliant {
		t.Fatalf("after the refresh: allow=%v reasons=%v", a.Allow, a.ReasonCodes())
	}
}
