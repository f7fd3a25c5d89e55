package compliance_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/measure"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

const benchDevices = 100_000

// benchFleet stores n agent devices with a posture each, half of them on an OS older than
// strictPolicy's minimum, all under the default policy "base". The engine is loaded and every
// verdict persisted before it returns; nothing here is timed.
func benchFleet(b *testing.B, n int) *env {
	b.Helper()
	e := newEnv(b)
	e.putPolicy(b, "base", basePolicy)
	e.assign(b, compliance.Target{Kind: compliance.TargetDefault}, "base")
	ctx := context.Background()
	const perTx = 10_000
	for start := 0; start < n; start += perTx {
		// Ten thousand devices per unit of work: few fsyncs, so setup takes seconds.
		err := e.st.Update(ctx, func(tx storage.Tx) error {
			for i := start; i < min(start+perTx, n); i++ {
				group := "west"
				if i%2 == 0 {
					group = "east"
				}
				d := &inventory.Device{
					ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows",
					Owner: fmt.Sprintf("user%d@example.org", i%5000), Group: group, Serial: fmt.Sprintf("SN%010d", i),
					Hostname: fmt.Sprintf("WS-%06d", i), EnrolledAt: t0, LastSeen: t0, State: inventory.StateActive,
					StateChangedAt: t0, CertSerials: []string{fmt.Sprintf("%x", 1<<40+2*i), fmt.Sprintf("%x", 1<<40+2*i+1)},
					Enrollment: "e_0123456789abcdef",
				}
				if err := inventory.Save(ctx, tx.Inventory(), d, t0); err != nil {
					return err
				}
				ver := "10.0.22631"
				if i%2 == 0 {
					ver = "10.0.19045"
				}
				p := windows(ver, true, t0)
				p.ReportedAt = t0
				p.SecureBoot = policies.Observe(true, policies.ProvenanceAgent, t0)
				p.ScreenLockEnabled = policies.Observe(true, policies.ProvenanceAgent, t0)
				p.PasscodePresent = policies.Observe(true, policies.ProvenanceAgent, t0)
				if err := tx.Compliance().PutPosture(ctx, d.ID, p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := e.eng.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Devices != n || st.Changed != n {
		b.Fatalf("initial pass = %+v, %v", st, err)
	}
	e.clock.Set(t0.Add(time.Minute))
	return e
}

// BenchmarkReadPass100k is the floor: one inventory.Store.ForEach over 100,000 device records,
// decoding each.
func BenchmarkReadPass100k(b *testing.B) {
	e := benchFleet(b, benchDevices)
	ctx := context.Background()
	for b.Loop() {
		n := 0
		if err := e.inv.ForEach(ctx, func(*inventory.Device) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != benchDevices {
			b.Fatalf("read %d devices", n)
		}
	}
}

// BenchmarkReevaluateAll100k is a policy change followed by ReevaluateAll over 100,000
// devices: the default policy alternates between basePolicy and strictPolicy, so every device
// is evaluated and half of them flip between compliant and os_too_old (verdict and history row
// written, index entry re-encoded), with fsync on.
func BenchmarkReevaluateAll100k(b *testing.B) {
	e := benchFleet(b, benchDevices)
	ctx := context.Background()
	srcs := []string{strictPolicy, basePolicy}
	i, changed := 0, 0
	for b.Loop() {
		// Each iteration moves the clock so that history keys never collide.
		e.clock.Set(t0.Add(time.Duration(i+2) * time.Minute))
		if _, err := e.ps.Put(ctx, "base", []byte(srcs[i%2]), "bench"); err != nil {
			b.Fatal(err)
		}
		st, err := e.eng.ReevaluateAll(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Devices != benchDevices || st.Changed != benchDevices/2 {
			b.Fatalf("pass = %+v, want %d changed", st, benchDevices/2)
		}
		changed += st.Changed
		i++
	}
	b.ReportMetric(float64(changed)/float64(i), "changed/op")
}

// BenchmarkReevaluateVsRead100k runs both passes above on one fleet, alternating within each
// iteration, so that both see the same machine load, and reports their mean times and ratio
// (the acceptance figure: reeval/read <= 2).
func BenchmarkReevaluateVsRead100k(b *testing.B) {
	e := benchFleet(b, benchDevices)
	ctx := context.Background()
	srcs := []string{strictPolicy, basePolicy}
	var read, reeval, readCPU, reevalCPU time.Duration
	i := 0
	for b.Loop() {
		start, cpu := time.Now(), measure.ProcessCPU()
		n := 0
		if err := e.inv.ForEach(ctx, func(*inventory.Device) error { n++; return nil }); err != nil || n != benchDevices {
			b.Fatalf("read %d devices: %v", n, err)
		}
		read += time.Since(start)
		readCPU += measure.ProcessCPU() - cpu

		start, cpu = time.Now(), measure.ProcessCPU()
		e.clock.Set(t0.Add(time.Duration(i+2) * time.Minute))
		if _, err := e.ps.Put(ctx, "base", []byte(srcs[i%2]), "bench"); err != nil {
			b.Fatal(err)
		}
		st, err := e.eng.ReevaluateAll(ctx)
		if err != nil || st.Changed != benchDevices/2 {
			b.Fatalf("pass = %+v, %v", st, err)
		}
		reeval += time.Since(start)
		reevalCPU += measure.ProcessCPU() - cpu
		i++
	}
	b.ReportMetric(float64(read.Nanoseconds())/float64(i), "read-ns/pass")
	b.ReportMetric(float64(reeval.Nanoseconds())/float64(i), "reeval-ns/pass")
	b.ReportMetric(float64(reeval)/float64(read), "ratio")
	b.ReportMetric(float64(readCPU.Nanoseconds())/float64(i), "read-cpu-ns/pass")
	b.ReportMetric(float64(reevalCPU.Nanoseconds())/float64(i), "reeval-cpu-ns/pass")
}

// BenchmarkRefreshVsRead100k measures what an access replica pays to follow the primary, on a
// fleet of 100,000 devices: Refresh of one device and of a batch of 1,000 (read by key), against
// the read pass floor (one inventory ForEach), alternating within each iteration.
func BenchmarkRefreshVsRead100k(b *testing.B) {
	e := benchFleet(b, benchDevices)
	ctx := context.Background()
	ps, err := compliance.NewPolicyStore(ctx, complianceStore(e.st))
	if err != nil {
		b.Fatal(err)
	}
	replica, err := compliance.NewEngine(complianceStore(e.st), ps, access.NewIndex(), compliance.WithClock(e.clock.Now))
	if err != nil {
		b.Fatal(err)
	}
	if err := replica.Load(ctx); err != nil {
		b.Fatal(err)
	}
	// A batch spread over the fleet, and the last device by ID.
	var ids []string
	var last string
	n := 0
	if err := e.inv.ForEach(ctx, func(d *inventory.Device) error {
		if n%(benchDevices/1000) == 0 {
			ids = append(ids, d.ID)
		}
		n++
		last = d.ID
		return nil
	}); err != nil || len(ids) != 1000 {
		b.Fatalf("%d ids: %v", len(ids), err)
	}
	var read, one, batch time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		n := 0
		if err := e.inv.ForEach(ctx, func(*inventory.Device) error { n++; return nil }); err != nil || n != benchDevices {
			b.Fatalf("read %d devices: %v", n, err)
		}
		read += time.Since(start)
		start = time.Now()
		if err := replica.Refresh(ctx, last); err != nil {
			b.Fatal(err)
		}
		one += time.Since(start)
		start = time.Now()
		if err := replica.Refresh(ctx, ids...); err != nil {
			b.Fatal(err)
		}
		batch += time.Since(start)
		i++
	}
	b.ReportMetric(float64(read.Nanoseconds())/float64(i), "read-ns/pass")
	b.ReportMetric(float64(one.Nanoseconds())/float64(i), "refresh1-ns/op")
	b.ReportMetric(float64(batch.Nanoseconds())/float64(i), "refresh1000-ns/op")
	b.ReportMetric(float64(one)/float64(read), "refresh1/read")
	b.ReportMetric(float64(batch)/float64(read), "refresh1000/read")
}
