package compliance

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// env is an engine on a real bbolt file, with the stores it needs.
type env struct {
	path  string
	db    *bbolt.DB
	inv   *inventory.Store
	ps    *PolicyStore
	index *access.Index
	eng   *Engine
	clock *testclock.Clock
	opts  []Option // extra engine options, applied on every open
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := &env{path: filepath.Join(tb.TempDir(), "hale.db"), clock: testclock.New(t0)}
	e.open(tb)
	tb.Cleanup(func() { e.db.Close() })
	return e
}

// open opens (or reopens) the database and builds every store on it, then loads the engine.
func (e *env) open(tb testing.TB) {
	tb.Helper()
	db, err := bbolt.Open(e.path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	e.db = db
	if e.inv, err = inventory.New(db, inventory.WithClock(e.clock.Now)); err != nil {
		tb.Fatal(err)
	}
	if e.ps, err = NewPolicyStore(db, WithPolicyClock(e.clock.Now)); err != nil {
		tb.Fatal(err)
	}
	e.index = access.NewIndex()
	if e.eng, err = NewEngine(db, e.ps, e.inv, e.index, append([]Option{WithClock(e.clock.Now)}, e.opts...)...); err != nil {
		tb.Fatal(err)
	}
	if err := e.eng.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func (e *env) reopen(tb testing.TB) {
	tb.Helper()
	if err := e.db.Close(); err != nil {
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

func (e *env) putPolicy(tb testing.TB, name, src string) *StoredPolicy {
	tb.Helper()
	sp, err := e.ps.Put(context.Background(), name, []byte(src), "admin")
	if err != nil {
		tb.Fatal(err)
	}
	return sp
}

func (e *env) assign(tb testing.TB, t Target, name string) {
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

// bucketDump returns every key and value of the compliance buckets.
func bucketDump(tb testing.TB, db *bbolt.DB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if len(name) < 11 || string(name[:11]) != "compliance_" {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+string(k)] = string(v)
				return nil
			})
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
