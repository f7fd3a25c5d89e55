package compliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/policies"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// env is an engine on a real store (bbolt), with the services it needs.
type env struct {
	path  string
	st    *boltstore.Store
	inv   *inventory.Service
	ps    *compliance.PolicyStore
	index *access.Index
	eng   *compliance.Engine
	clock *testclock.Clock
	opts  []compliance.Option // extra engine options, applied on every open
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := &env{path: filepath.Join(tb.TempDir(), "hale.db"), clock: testclock.New(t0)}
	e.open(tb)
	tb.Cleanup(func() { e.st.Close() })
	return e
}

// open opens (or reopens) the database and builds every store on it, then loads the engine.
func (e *env) open(tb testing.TB) {
	tb.Helper()
	st, err := boltstore.Open(e.path, boltstore.WithOpenTimeout(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	e.st = st
	e.inv = inventory.NewService(storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx }), inventory.WithClock(e.clock.Now))
	if e.ps, err = compliance.NewPolicyStore(context.Background(), complianceStore(st), compliance.WithPolicyClock(e.clock.Now)); err != nil {
		tb.Fatal(err)
	}
	e.index = access.NewIndex()
	if e.eng, err = compliance.NewEngine(complianceStore(st), e.ps, e.index, append([]compliance.Option{compliance.WithClock(e.clock.Now)}, e.opts...)...); err != nil {
		tb.Fatal(err)
	}
	if err := e.eng.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// complianceStore narrows st to what compliance uses, as the server does.
func complianceStore(st storage.Store) compliance.Store {
	return storage.Scope(st, func(tx storage.Tx) compliance.Tx { return tx })
}

func (e *env) reopen(tb testing.TB) {
	tb.Helper()
	if err := e.st.Close(); err != nil {
		tb.Fatal(err)
	}
	e.open(tb)
}

// device enrolls a Windows agent device in group and tells the engine.
func (e *env) device(tb testing.TB, group string) *inventory.Device {
	tb.Helper()
	d, err := e.inv.Create(context.Background(), inventory.Device{
		ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: "nurse@example.org", Group: group,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.eng.DeviceChanged(context.Background(), d); err != nil {
		tb.Fatal(err)
	}
	return d
}

func (e *env) putPolicy(tb testing.TB, name, src string) *compliance.StoredPolicy {
	tb.Helper()
	sp, err := e.ps.Put(context.Background(), name, []byte(src), "admin")
	if err != nil {
		tb.Fatal(err)
	}
	return sp
}

func (e *env) assign(tb testing.TB, t compliance.Target, name string) {
	tb.Helper()
	if err := e.ps.Assign(context.Background(), t, name); err != nil {
		tb.Fatal(err)
	}
}

// report ingests an agent report observed at the current clock.
func (e *env) report(tb testing.TB, id string, p *policies.Posture) policies.Verdict {
	tb.Helper()
	v, err := e.eng.IngestAgentReport(context.Background(), id, p, e.clock.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// windows returns an agent posture of a Windows device.
func windows(version string, encrypted bool, at time.Time) *policies.Posture {
	return &policies.Posture{
		Platform:      policies.PlatformWindows,
		OS:            policies.Observe(policies.OSInfo{Version: version}, policies.ProvenanceAgent, at),
		DiskEncrypted: policies.Observe(encrypted, policies.ProvenanceAgent, at),
	}
}

func codes(rs []policies.Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

// storeDump returns every compliance record the store holds, read through the repositories:
// the policies (current, every version, the last version number), the assignments, and for
// every device its posture, verdict, history rows and Apple policy delivery.
func storeDump(tb testing.TB, e *env) map[string]string {
	tb.Helper()
	out := map[string]string{}
	put := func(k string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		out[k] = string(b)
	}
	ctx := context.Background()
	err := e.st.View(ctx, func(tx storage.Tx) error {
		r := tx.Compliance()
		cur, err := r.CurrentPolicies(ctx)
		if err != nil {
			return err
		}
		for _, sp := range cur {
			put("policy/"+sp.Name, sp)
			vs, err := r.PolicyVersions(ctx, sp.Name)
			if err != nil {
				return err
			}
			for _, v := range vs {
				put(fmt.Sprintf("version/%s/%d", v.Name, v.Version), v)
			}
			last, err := r.LastPolicyVersion(ctx, sp.Name)
			if err != nil {
				return err
			}
			put("last/"+sp.Name, last)
		}
		as, err := r.Assignments(ctx)
		if err != nil {
			return err
		}
		for _, a := range as {
			put("assignment/"+a.Target.Kind+"/"+a.Target.Name, a.Policy)
		}
		if err := r.ForEachPosture(ctx, func(id string, p *policies.Posture) error {
			put("posture/"+id, p)
			return nil
		}); err != nil {
			return err
		}
		if err := r.ForEachVerdict(ctx, func(id string, v *policies.Verdict) error {
			put("verdict/"+id, v)
			return nil
		}); err != nil {
			return err
		}
		return tx.Inventory().ForEach(ctx, "", func(d *inventory.Device) error {
			h, err := r.History(ctx, d.ID, math.MaxInt)
			if err != nil {
				return err
			}
			for i, v := range h {
				put(fmt.Sprintf("history/%s/%d", d.ID, i), v)
			}
			del, ok, err := r.Delivery(ctx, d.ID)
			if ok {
				put("delivery/"+d.ID, del)
			}
			return err
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func historyLen(tb testing.TB, e *env, id string) int {
	tb.Helper()
	h, err := e.eng.History(context.Background(), id, 1000)
	if err != nil {
		tb.Fatal(err)
	}
	return len(h)
}

// jsonRoundTrip returns v as generic JSON, so values compare by what they encode to.
func jsonRoundTrip(tb testing.TB, v any) any {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}
