package inventory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// populate writes n realistic agent records, each with two certificate serials, and returns the
// serials.
func populate(b *testing.B, st storage.Store, n int) []string {
	b.Helper()
	serials := make([]string, 0, 2*n)
	const perTx = 10000
	for start := 0; start < n; start += perTx {
		err := st.Update(context.Background(), func(tx storage.Tx) error {
			for i := start; i < min(start+perTx, n); i++ {
				d := &inventory.Device{
					ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: fmt.Sprintf("user%d@example.org", i%5000),
					Group: fmt.Sprintf("group-%d", i%40), Serial: fmt.Sprintf("SN%010d", i), Hostname: fmt.Sprintf("WS-%06d", i),
					EnrolledAt: t0, LastSeen: t0.Add(time.Duration(i) * time.Second), State: inventory.StateActive, StateChangedAt: t0,
					CertSerials: []string{fmt.Sprintf("%x", 1<<40+2*i), fmt.Sprintf("%x", 1<<40+2*i+1)},
					Enrollment:  "e_0123456789abcdef",
				}
				if err := inventory.Save(context.Background(), tx.Inventory(), d, t0); err != nil {
					return err
				}
				serials = append(serials, d.CertSerials...)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return serials
}

// BenchmarkForEach100k is one plain read pass over 100,000 device records: the floor any
// whole-fleet re-evaluation pays.
func BenchmarkForEach100k(b *testing.B) {
	st, s := newStore(b)
	populate(b, st, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.ForEach(ctx, func(*inventory.Device) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != 100_000 {
			b.Fatalf("saw %d devices", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/device")
}

// BenchmarkGetByCertSerial is the per-request lookup of an mTLS client's device in a 100,000
// device inventory.
func BenchmarkGetByCertSerial(b *testing.B) {
	st, s := newStore(b)
	serials := populate(b, st, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := s.GetByCertSerial(ctx, serials[i%len(serials)]); err != nil {
			b.Fatal(err)
		}
		i += 7919 // stride through the keyspace rather than hitting one hot page
	}
}
