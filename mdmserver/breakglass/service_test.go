package breakglass_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/policies"
)

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

type devices map[string]*inventory.Device

func (d devices) Get(_ context.Context, id string) (*inventory.Device, error) {
	if dev, ok := d[id]; ok {
		return dev, nil
	}
	return nil, inventory.ErrNotFound
}

type counts struct{ started, ended, refused map[string]int }

func (c *counts) Started(ch string) { c.started[ch]++ }
func (c *counts) Ended(r string)    { c.ended[r]++ }
func (c *counts) Refused(r string)  { c.refused[r]++ }

type fixture struct {
	st      *boltstore.Store
	clock   *testclock.Clock
	index   *access.Index
	tr      *events.Transmitter
	stream  string
	svc     *breakglass.Service
	metrics *counts
	policy  *policies.Policy
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _ := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	keys, err := signing.Open(ctx, storage.Scope(st, func(tx storage.Tx) signing.Tx { return tx }), key)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := events.New(storage.Scope(st, func(tx storage.Tx) events.Tx { return tx }), keys, "https://hale.example", key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tr.CreateStream(ctx, events.Caller{ID: "backend"}, events.Config{Audience: "backend"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, clock: testclock.New(t0), tr: tr, stream: s.StreamID, metrics: &counts{map[string]int{}, map[string]int{}, map[string]int{}}}
	f.index = access.NewIndex(access.WithClock(f.clock.Now))
	f.index.MarkLoaded()
	f.policy = &policies.Policy{Name: "hipaa", Version: 3, BreakGlass: &policies.BreakGlassPolicy{Allowed: true,
		Duration: policies.Duration(4 * time.Hour), MaxUses: 1, Per: policies.Duration(24 * time.Hour),
		Overridable: []string{policies.CodeOSTooOld, policies.CodeReportStale}}}
	devs := devices{}
	for _, d := range []struct{ id, owner string }{{"d1", "dana"}, {"d2", "dana"}, {"d3", "eli"}} {
		devs[d.id] = &inventory.Device{ID: d.id, Owner: d.owner, Platform: "ios"}
		f.put(d.id, "active", policies.CodeOSTooOld)
	}
	f.svc = f.newService(devs)
	t.Cleanup(f.svc.Close)
	return f
}

func (f *fixture) newService(devs devices) *breakglass.Service {
	return breakglass.New(storage.Scope(f.st, func(tx storage.Tx) breakglass.Tx { return tx }), f.index, devs,
		func(*inventory.Device) (*policies.Policy, error) { return f.policy, nil }, f.tr,
		breakglass.WithClock(f.clock.Now), breakglass.WithAfterFunc(f.clock.AfterFunc), breakglass.WithMetrics(f.metrics))
}

// put gives the index a decision for id: state, and past grace for code ("" compliant).
func (f *fixture) put(id, state, code string) {
	d := &access.Decision{DeviceID: id, State: state, ReportedAt: t0, StaleAt: t0.Add(48 * time.Hour),
		Posture: &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: t0}, Verdict: policies.Verdict{Compliant: true}}
	if code != "" {
		d.Verdict = policies.Verdict{Reasons: []policies.Reason{{Code: code}}, NoncompliantSince: t0.Add(-48 * time.Hour),
			GraceUntil: t0.Add(-24 * time.Hour)}
	}
	f.index.Put(d, f.clock.Now())
}

func (f *fixture) auditActions(t *testing.T) []string {
	t.Helper()
	var out []string
	err := f.st.View(context.Background(), func(tx storage.Tx) error {
		n, err := tx.Audit().Size(context.Background())
		if err != nil {
			return err
		}
		for i := int64(0); i < n; i++ {
			e, err := tx.Audit().Entry(context.Background(), i)
			if err != nil {
				return err
			}
			var entry audit.Entry
			if err := json.Unmarshal(e, &entry); err != nil {
				return err
			}
			out = append(out, entry.Action+" "+entry.Target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func byDevice(id string) breakglass.Request {
	return breakglass.Request{DeviceID: id, Reason: "code blue in bay 4, need the on-call team", Channel: breakglass.ChannelDevice,
		Entry: audit.Entry{Actor: "device:" + id, Role: "device", Source: "192.0.2.1:1"}}
}

func refusal(t *testing.T, err error, code string) {
	t.Helper()
	var r *breakglass.Refusal
	if !errors.As(err, &r) || r.Code != code {
		t.Fatalf("err = %v, want refusal %s", err, code)
	}
}

func TestStartExpireReview(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Person != "dana" || !u.ExpiresAt.Equal(t0.Add(4*time.Hour)) || strings.Join(u.Overrides, ",") != "noncompliant_past_grace,os_too_old" {
		t.Fatalf("use %+v", u)
	}
	a := f.index.Lookup("d1", f.clock.Now())
	if !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != u.ID {
		t.Fatalf("answer after start %+v", a)
	}
	if f.tr.Pending(f.stream) != 1 || f.metrics.started["device"] != 1 {
		t.Fatalf("pending %d, metrics %+v", f.tr.Pending(f.stream), f.metrics)
	}
	// The same person, another device, inside the window: refused, nothing changed.
	_, err = f.svc.Start(ctx, byDevice("d2"))
	refusal(t, err, breakglass.RefusedLimit)
	if f.index.Lookup("d2", f.clock.Now()).Allow || f.tr.Pending(f.stream) != 1 {
		t.Fatal("a refused start changed something")
	}
	// The same device again while in force.
	_, err = f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedActive)

	// At expiry the timer ends it: denied again, the end event sent, the end audited.
	f.clock.Set(u.ExpiresAt)
	deadline := time.Now().Add(5 * time.Second)
	for f.tr.Pending(f.stream) != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if f.tr.Pending(f.stream) != 2 {
		t.Fatal("no event at expiry")
	}
	if a := f.index.Lookup("d1", f.clock.Now()); a.Allow || a.BreakGlass != nil {
		t.Fatalf("answer at expiry %+v", a)
	}
	got, _ := f.svc.Get(ctx, u.ID)
	if got.EndReason != breakglass.EndExpired || !got.EndedAt.Equal(u.ExpiresAt) {
		t.Fatalf("ended use %+v", got)
	}

	// Unreviewed and a day old: overdue.
	f.clock.Set(t0.Add(25 * time.Hour))
	overdue, err := f.svc.List(ctx, breakglass.Filter{Unreviewed: true, OlderThan: breakglass.ReviewDue})
	if err != nil || len(overdue) != 1 || overdue[0].ID != u.ID {
		t.Fatalf("overdue %v %v", overdue, err)
	}
	// Its own user may not review it; a security person approves it, once.
	_, err = f.svc.Review(ctx, u.ID, breakglass.ReviewApproved, "", audit.Entry{Actor: "token:t1", Person: "dana"})
	refusal(t, err, breakglass.RefusedSelfReview)
	if _, err := f.svc.Review(ctx, u.ID, breakglass.ReviewApproved, "code blue confirmed", audit.Entry{Actor: "token:t2", Person: "sam"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.Review(ctx, u.ID, breakglass.ReviewRevoked, "", audit.Entry{Actor: "token:t3", Person: "rita"})
	refusal(t, err, breakglass.RefusedReviewed)
	if overdue, _ := f.svc.List(ctx, breakglass.Filter{Unreviewed: true}); len(overdue) != 0 {
		t.Fatalf("a reviewed use is still listed: %v", overdue)
	}
	want := []string{"break_glass.start d1", "break_glass.end d1", "break_glass.review d1"}
	if got := f.auditActions(t); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("audit %v, want %v", got, want)
	}
}

func TestRevokeEndsAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	req := byDevice("d3")
	req.Channel, req.Entry = breakglass.ChannelSecurity, audit.Entry{Actor: "token:t1", Person: "sam"}
	req.Duration = time.Hour
	u, err := f.svc.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if u.GrantedBy != "sam" || !u.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("%+v", u)
	}
	_, err = f.svc.Review(ctx, u.ID, breakglass.ReviewRevoked, "", audit.Entry{Actor: "token:t1", Person: "sam"})
	refusal(t, err, breakglass.RefusedSelfReview)
	r, err := f.svc.Review(ctx, u.ID, breakglass.ReviewRevoked, "not an emergency", audit.Entry{Actor: "token:t2", Person: "rita"})
	if err != nil || r.EndReason != breakglass.EndRevoked || r.Review.Decision != breakglass.ReviewRevoked {
		t.Fatalf("%+v %v", r, err)
	}
	if f.index.Lookup("d3", f.clock.Now()).Allow || f.tr.Pending(f.stream) != 2 || f.metrics.ended["revoked"] != 1 {
		t.Fatalf("revoked use still in force, or no event: pending %d", f.tr.Pending(f.stream))
	}
	// The timer it had does nothing later.
	f.clock.Set(u.ExpiresAt.Add(time.Second))
	time.Sleep(20 * time.Millisecond)
	if f.tr.Pending(f.stream) != 2 {
		t.Fatal("an ended use ended again")
	}
}

func TestStartRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	before := f.tr.Pending(f.stream)
	f.put("d1", "wiped", policies.CodeOSTooOld)
	_, err := f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedNotOverride)
	f.put("d1", "active", policies.CodeJailbroken)
	_, err = f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedNotOverride)
	f.put("d1", "locked", "")
	_, err = f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedNotOverride)
	f.put("d1", "active", policies.CodeEncryptionOff) // not in the policy's list
	_, err = f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedNotOverride)
	f.put("d1", "active", "")
	_, err = f.svc.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedNotDenied)

	for _, reason := range []string{"", "   ", "help", strings.Repeat("x", breakglass.MaxReasonLen+1), "code blue \xff\xfe now"} {
		req := byDevice("d2")
		req.Reason = reason
		_, err = f.svc.Start(ctx, req)
		refusal(t, err, breakglass.RefusedNoReason)
	}
	req := byDevice("d2")
	req.Duration = 5 * time.Hour
	_, err = f.svc.Start(ctx, req)
	refusal(t, err, breakglass.RefusedTooLong)
	req.Duration = -time.Second
	_, err = f.svc.Start(ctx, req)
	refusal(t, err, breakglass.RefusedTooLong)
	_, err = f.svc.Start(ctx, byDevice("nope"))
	refusal(t, err, breakglass.RefusedUnknownState)
	f.policy.BreakGlass.Allowed = false
	_, err = f.svc.Start(ctx, byDevice("d2"))
	refusal(t, err, breakglass.RefusedNotAllowed)
	f.policy.BreakGlass = nil
	_, err = f.svc.Start(ctx, byDevice("d2"))
	refusal(t, err, breakglass.RefusedNotAllowed)

	if f.tr.Pending(f.stream) != before || len(f.auditActions(t)) != 0 {
		t.Fatal("a refused start changed something")
	}
	if uses, _ := f.svc.List(ctx, breakglass.Filter{}); len(uses) != 0 {
		t.Fatalf("refused starts were stored: %v", uses)
	}
}

func TestLoadAfterRestart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	req := byDevice("d3")
	req.Duration = time.Hour
	short, err := f.svc.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Close()
	// A new index and service, as after a restart, two hours later: d1's use is put back in
	// force, d3's (expired meanwhile) is ended with its event.
	f.clock.Set(t0.Add(2 * time.Hour))
	f.index = access.NewIndex(access.WithClock(f.clock.Now))
	f.index.MarkLoaded()
	for _, id := range []string{"d1", "d3"} {
		f.put(id, "active", policies.CodeOSTooOld)
	}
	svc := f.newService(devices{"d1": {ID: "d1", Owner: "dana"}, "d3": {ID: "d3", Owner: "eli"}})
	defer svc.Close()
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if a := f.index.Lookup("d1", f.clock.Now()); !a.Allow || a.BreakGlass.ID != u.ID {
		t.Fatalf("d1 after restart %+v", a)
	}
	if a := f.index.Lookup("d3", f.clock.Now()); a.Allow {
		t.Fatalf("d3 after restart %+v", a)
	}
	got, _ := svc.Get(ctx, short.ID)
	if got.EndReason != breakglass.EndExpired || f.tr.Pending(f.stream) != 3 {
		t.Fatalf("expired use %+v, pending %d", got, f.tr.Pending(f.stream))
	}
}

// TestStartOnTwoServers runs a second Service, as another server would, on the same store with
// an index of its own that has not heard of the first server's use: its start for the same
// device is refused from the stored use, inside its unit of work.
func TestStartOnTwoServers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.policy.BreakGlass.MaxUses = 3 // only the device's use in force can refuse the second
	u, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	// Server B: its own index, still denying d1 (it missed A's grant), and its own memory.
	other := access.NewIndex(access.WithClock(f.clock.Now))
	other.MarkLoaded()
	for _, id := range []string{"d1", "d2"} {
		d := &access.Decision{DeviceID: id, State: "active", ReportedAt: t0, StaleAt: t0.Add(48 * time.Hour),
			Posture: &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: t0},
			Verdict: policies.Verdict{Reasons: []policies.Reason{{Code: policies.CodeOSTooOld}}, NoncompliantSince: t0.Add(-48 * time.Hour),
				GraceUntil: t0.Add(-24 * time.Hour)}}
		other.Put(d, f.clock.Now())
	}
	if other.Lookup("d1", f.clock.Now()).Allow {
		t.Fatal("server B's index already allows d1; the test needs it stale")
	}
	devs := devices{"d1": {ID: "d1", Owner: "dana", Platform: "ios"}, "d2": {ID: "d2", Owner: "dana", Platform: "ios"}}
	b := breakglass.New(storage.Scope(f.st, func(tx storage.Tx) breakglass.Tx { return tx }), other, devs,
		func(*inventory.Device) (*policies.Policy, error) { return f.policy, nil }, f.tr,
		breakglass.WithClock(f.clock.Now), breakglass.WithAfterFunc(f.clock.AfterFunc), breakglass.WithMetrics(f.metrics))
	t.Cleanup(b.Close)
	_, err = b.Start(ctx, byDevice("d1"))
	refusal(t, err, breakglass.RefusedActive)
	if other.Lookup("d1", f.clock.Now()).Allow {
		t.Fatal("a refused start let the device through on server B")
	}
	uses, err := f.svc.List(ctx, breakglass.Filter{})
	if err != nil || len(uses) != 1 || uses[0].ID != u.ID {
		t.Fatalf("uses stored after B's refused start: %d (%v)", len(uses), err)
	}
	// Another device of the same person is not held up by it (the limit allows 3).
	if _, err := b.Start(ctx, byDevice("d2")); err != nil {
		t.Fatalf("B starting another device: %v", err)
	}
}
