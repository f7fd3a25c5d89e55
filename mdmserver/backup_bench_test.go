package mdmserver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// BenchmarkBackup100k takes a backup (GET /api/v1/backup) of a server whose store holds
// 100,000 device records, and measures the admin API meanwhile: a device page read and a token
// created (an fsynced write with its audit entry), one after the other, p99 during the backup
// against the same requests with the server idle.
func BenchmarkBackup100k(b *testing.B) {
	s := servertest.Start(b)
	t0 := time.Now().UTC()
	const n, perTx = 100_000, 10_000
	for start := 0; start < n; start += perTx {
		err := s.Store().Update(context.Background(), func(tx storage.Tx) error {
			for i := start; i < start+perTx; i++ {
				d := &inventory.Device{ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows",
					Owner: fmt.Sprintf("user%d@example.org", i%5000), Group: fmt.Sprintf("group-%d", i%40),
					Serial: fmt.Sprintf("SN%010d", i), Hostname: fmt.Sprintf("WS-%06d", i), EnrolledAt: t0, LastSeen: t0,
					State: inventory.StateActive, StateChangedAt: t0, CertSerials: []string{fmt.Sprintf("%x", 1<<40+i)}}
				if err := inventory.Save(context.Background(), tx.Inventory(), d, t0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.RootCAs()}}}
	do := func(method, path, body string) {
		req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.Admin)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	var seq atomic.Int64
	// sample runs read-then-write pairs until stop is closed (or count pairs when stop is nil)
	// and returns the latencies.
	sample := func(stop <-chan struct{}, count int) []time.Duration {
		var lat []time.Duration
		for i := 0; stop != nil || i < count; i++ {
			if stop != nil {
				select {
				case <-stop:
					return lat
				default:
				}
			}
			start := time.Now()
			do("GET", "/api/v1/devices?limit=50&group=group-7", "")
			lat = append(lat, time.Since(start))
			start = time.Now()
			do("POST", "/api/v1/tokens", fmt.Sprintf(`{"name":"bench-%d","role":"auditor"}`, seq.Add(1)))
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	p99 := func(lat []time.Duration) time.Duration {
		slices.Sort(lat)
		return lat[len(lat)*99/100]
	}
	var size int64
	var took, during, idle time.Duration
	b.ResetTimer()
	for range b.N {
		stop := make(chan struct{})
		got := make(chan []time.Duration)
		go func() { got <- sample(stop, 0) }()
		start := time.Now()
		req, _ := http.NewRequest("GET", s.URL+"/api/v1/backup", nil)
		req.Header.Set("Authorization", "Bearer "+s.Admin)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		size, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took = time.Since(start)
		close(stop)
		lat := <-got
		during = p99(lat)
		idle = p99(sample(nil, len(lat)/2+50))
	}
	b.ReportMetric(float64(took.Milliseconds()), "backup-ms")
	b.ReportMetric(float64(size)/(1<<20), "backup-MiB")
	// The floor of any backup: reading the database file once (from the page cache, as the
	// snapshot mostly does).
	start := time.Now()
	f, err := os.Open(s.Store().(*boltstore.Store).Path())
	if err != nil {
		b.Fatal(err)
	}
	dbSize, _ := io.Copy(io.Discard, f)
	f.Close()
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "file-copy-ms")
	b.ReportMetric(float64(dbSize)/(1<<20), "db-file-MiB")
	b.ReportMetric(float64(during.Microseconds())/1000, "p99-during-ms")
	b.ReportMetric(float64(idle.Microseconds())/1000, "p99-idle-ms")
	b.ReportMetric(float64(during)/float64(idle), "p99-ratio")
}
