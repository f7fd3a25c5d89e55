package pgmdm_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/nanomdm/storage/pgsql"
)

// BenchmarkCommandCycle measures one command's trip through the queue on PostgreSQL: a
// DeviceLock is queued, the device's Idle check-in fetches it and its Acknowledged answer
// clears it. The baseline is nanomdm's own pgsql storage (bodies in clear, answered commands
// deleted, as pgmdm's default does); pgmdm runs with bodies in clear and sealed. The three run
// interleaved, each on its own database of the same server (HALE_TEST_POSTGRES), so the
// shared machine's changing load falls on all of them alike. Reported: the baseline's time
// per cycle and each pgmdm variant's time as a ratio of it (ns/op is the three cycles).
func BenchmarkCommandCycle(b *testing.B) {
	base, err := pgsql.New(pgsql.WithDB(openDB(b)), pgsql.WithDeleteCommands())
	if err != nil {
		b.Fatal(err)
	}
	stores := []struct {
		name string
		st   storage.AllStorage
	}{
		{"nanomdm-pgsql", base},
		{"pgmdm-clear", newStorage(b, openDB(b))},
		{"pgmdm-sealed", newStorage(b, openDB(b), pgmdm.WithCommandSealer(masterKey(b)))},
	}
	devices := make([]*device, len(stores))
	for i, s := range stores {
		devices[i] = enroll(b, s.st, "0000FE00-5A1E-4D2C-8B5B-0000000BE4C4")
	}
	spent := make([]time.Duration, len(stores))
	n := 0
	for b.Loop() {
		uuid := fmt.Sprintf("LOCK-%08d", n)
		n++
		for i, s := range stores {
			cmd := lockCommand(b, uuid, "483920")
			start := time.Now()
			enqueue(b, s.st, cmd, devices[i].udid)
			devices[i].expect("", "Idle", uuid)
			devices[i].expect(uuid, "Acknowledged", "")
			spent[i] += time.Since(start)
		}
	}
	b.ReportMetric(float64(spent[0].Microseconds())/float64(n), "baseline-µs/cycle")
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "clear/baseline")
	b.ReportMetric(float64(spent[2])/float64(spent[0]), "sealed/baseline")
}
