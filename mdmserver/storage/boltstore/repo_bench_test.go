package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// BenchmarkRepository measures the inventory repository (package kvstore, through this backend's
// kvstore.Tx adapter) against its floor: the same bytes read or written with bbolt directly in
// the same kind of transaction, interleaved in one loop so both see the same machine. The ratio
// is what the repository and the key-value interface add; the interface alone is one dynamic
// call per bucket operation. Writes run with fsync off so the figure is CPU, not the disk.
func BenchmarkRepository(b *testing.B) {
	ctx := context.Background()
	const n = 1000
	devicesBucket := []byte("inventory_devices") // the on-disk name, so this file benches any version of the store
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	device := func(i int) *inventory.Device {
		return &inventory.Device{ID: fmt.Sprintf("dev_%08d", i), Platform: "apple", OS: "ios", Owner: "alice",
			Group: "clinical", EnrollmentID: fmt.Sprintf("UDID-%08d", i), EnrolledAt: t0, State: inventory.StateActive,
			StateChangedAt: t0, CertSerials: []string{fmt.Sprintf("%x", 1000+i)}}
	}
	open := func(b *testing.B) *Store {
		s := openTestStore(b)
		if err := s.Update(ctx, func(tx storage.Tx) error {
			for i := range n {
				if err := tx.Inventory().Put(ctx, device(i)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name      string
		raw, repo func(s *Store, i int) error
		noSync    bool
	}{
		{name: "get",
			raw: func(s *Store, i int) error {
				return s.db.View(func(btx *bbolt.Tx) error {
					var d inventory.Device
					return json.Unmarshal(btx.Bucket(devicesBucket).Get(fmt.Appendf(nil, "dev_%08d", i%n)), &d)
				})
			},
			repo: func(s *Store, i int) error {
				return s.View(ctx, func(tx storage.Tx) error {
					_, err := tx.Inventory().Get(ctx, fmt.Sprintf("dev_%08d", i%n))
					return err
				})
			}},
		{name: "list100",
			raw: func(s *Store, _ int) error {
				return s.db.View(func(btx *bbolt.Tx) error {
					c := btx.Bucket(devicesBucket).Cursor()
					k, v := c.First()
					for j := 0; k != nil && j < 100; k, v = c.Next() {
						var d inventory.Device
						if err := json.Unmarshal(v, &d); err != nil {
							return err
						}
						j++
					}
					return nil
				})
			},
			repo: func(s *Store, _ int) error {
				return s.View(ctx, func(tx storage.Tx) error {
					_, _, err := tx.Inventory().List(ctx, inventory.Filter{}, "", 100)
					return err
				})
			}},
		{name: "put", noSync: true,
			raw: func(s *Store, i int) error {
				d := device(i % n)
				v, err := json.Marshal(d)
				if err != nil {
					return err
				}
				return s.db.Update(func(btx *bbolt.Tx) error {
					b := btx.Bucket(devicesBucket)
					var old inventory.Device
					if err := json.Unmarshal(b.Get([]byte(d.ID)), &old); err != nil {
						return err
					}
					return b.Put([]byte(d.ID), v)
				})
			},
			repo: func(s *Store, i int) error {
				return s.Update(ctx, func(tx storage.Tx) error { return tx.Inventory().Put(ctx, device(i%n)) })
			}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := open(b)
			s.db.NoSync = c.noSync
			var raw, repo time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if err := c.raw(s, i); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := c.repo(s, i); err != nil {
					b.Fatal(err)
				}
				raw, repo = raw+mid.Sub(start), repo+time.Since(mid)
				i++
			}
			b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "bbolt-ns/op")
			b.ReportMetric(float64(repo.Nanoseconds())/float64(b.N), "repo-ns/op")
			b.ReportMetric(float64(repo)/float64(raw), "repo/bbolt")
		})
	}
}
