package access

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkLookupJSONBaseline is BenchmarkLookupJSON's baseline: the same 100,000 cached
// answers, keyed by the same device IDs and read in the same order by the same parallel
// readers, with no index around them. "syncmap" is the standard library's concurrent map, the
// ready-made thread-safe way to map a device ID to its answer: LookupJSON/syncmap is what the
// index's lock, staleness deadline and fail-closed checks cost next to it. "map" is a plain map
// nobody writes to, so read without a lock: the floor of any in-memory lookup (hashing the
// key), not a usable index, since the compliance engine writes to it while backends read.
func BenchmarkLookupJSONBaseline(b *testing.B) {
	x := NewIndex()
	x.MarkLoaded()
	const n = 100_000
	now := t0.Add(time.Minute)
	ids := make([]string, n)
	var sm sync.Map
	plain := make(map[string][]byte, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d_%016x", i)
		x.Put(compliantDecision(ids[i]), t0)
		body, _ := x.LookupJSON(ids[i], now)
		sm.Store(ids[i], body)
		plain[ids[i]] = body
	}
	// A sync.Map serves fresh stores under its lock until as many misses have promoted them to
	// its lock-free read map: one pass does that, so the baseline is timed at its best.
	for _, id := range ids {
		sm.Load(id)
	}
	b.Run("syncmap", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := sm.Load(ids[i%n]); !ok {
					b.Error("missing answer")
					return
				}
				i++
			}
		})
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if plain[ids[i%n]] == nil {
					b.Error("missing answer")
					return
				}
				i++
			}
		})
	})
}
