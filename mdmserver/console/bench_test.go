package console

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/policies"
)

// memTokens is the one signed-in token of the benchmark.
type memTokens struct{ t *tokens.Token }

func (m memTokens) Authenticate(context.Context, string) (*tokens.Token, error) { return m.t, nil }
func (m memTokens) Get(context.Context, string) (*tokens.Token, error)          { return m.t, nil }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fleet100k writes n agent records to a bbolt store and indexes an access decision for each,
// as the server holds them.
func fleet100k(b *testing.B, n int) (*inventory.Service, *access.Index) {
	b.Helper()
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "inv.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	st.DB().NoSync = true
	svc := inventory.NewService(storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx }))
	idx := access.NewIndex()
	const perTx = 10000
	for start := 0; start < n; start += perTx {
		err := st.Update(context.Background(), func(tx storage.Tx) error {
			for i := start; i < min(start+perTx, n); i++ {
				d := &inventory.Device{
					ID: inventory.NewID(), Platform: inventory.PlatformAgent, OS: "windows", Owner: fmt.Sprintf("user%d@example.org", i%5000),
					Group: fmt.Sprintf("group-%d", i%40), Serial: fmt.Sprintf("SN%010d", i), Hostname: fmt.Sprintf("WS-%06d", i),
					EnrolledAt: t0, LastSeen: t0.Add(time.Duration(i) * time.Second), State: inventory.StateActive, StateChangedAt: t0,
					CertSerials: []string{fmt.Sprintf("%x", 1<<40+2*i)}, Enrollment: "e_0123456789abcdef",
				}
				if err := inventory.Save(context.Background(), tx.Inventory(), d, t0); err != nil {
					return err
				}
				v := policies.Verdict{Compliant: i%7 != 0, EvaluatedAt: t0}
				if !v.Compliant {
					v.Reasons = []policies.Reason{{Code: policies.CodeEncryptionOff}}
				}
				idx.Put(&access.Decision{DeviceID: d.ID, State: "active", Verdict: v, ReportedAt: t0, StaleAt: t0.Add(24 * time.Hour * 365)}, t0)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	idx.MarkLoaded()
	return svc, idx
}

// BenchmarkDeviceListPage100k is the console's device list over 100,000 devices, a first and a
// middle page of 50, against the same query through the JSON API's handler (GET
// /api/v1/devices?limit=50&cursor=), alternating in the same run on the same store: server
// time per request, p99 of each, and their ratio. The console's request includes its session
// check, CSRF-free GET path, the access answer of every row and the HTML rendering; the JSON
// API's includes its encoding.
func BenchmarkDeviceListPage100k(b *testing.B) {
	const n = 100_000
	svc, idx := fleet100k(b, n)
	tok := &tokens.Token{ID: "0123456789abcdef", Name: "bench", Role: tokens.RoleIT, Person: "bench", CreatedAt: t0}
	c, err := New(Deps{Tokens: memTokens{tok}, Devices: svc, Access: idx,
		Roles: func(string) ([]tokens.Role, bool) { return []tokens.Role{tokens.RoleIT}, true }},
		WithLogger(slog.New(slog.DiscardHandler)), WithClock(func() time.Time { return t0 }))
	if err != nil {
		b.Fatal(err)
	}
	_, cookie, err := c.sessions.create(tok.ID, "token", t0, c.expiredAt)
	if err != nil {
		b.Fatal(err)
	}
	api := &adminapi.Devices{Devices: svc, Log: slog.New(slog.DiscardHandler)}
	_, middle, err := svc.List(context.Background(), inventory.Filter{}, "", n/2)
	if err != nil || middle == "" {
		b.Fatal(err)
	}
	for _, page := range []struct{ name, cursor string }{{"first", ""}, {"middle", middle}} {
		b.Run(page.name, func(b *testing.B) {
			consoleURL, apiURL := "/console/devices", "/api/v1/devices?limit=50"
			if page.cursor != "" {
				consoleURL += "?cursor=" + page.cursor
				apiURL += "&cursor=" + page.cursor
			}
			var consoleT, apiT []time.Duration
			for b.Loop() {
				req := httptest.NewRequest("GET", consoleURL, nil)
				req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
				w := httptest.NewRecorder()
				start := time.Now()
				c.ServeHTTP(w, req)
				consoleT = append(consoleT, time.Since(start))
				if w.Code != 200 {
					b.Fatalf("console: %d", w.Code)
				}
				req = httptest.NewRequest("GET", apiURL, nil)
				req = req.WithContext(tokens.WithToken(req.Context(), tok))
				w = httptest.NewRecorder()
				start = time.Now()
				api.List(w, req)
				apiT = append(apiT, time.Since(start))
				if w.Code != 200 {
					b.Fatalf("JSON API: %d", w.Code)
				}
			}
			cp, ap, cm, am := p99(consoleT), p99(apiT), mean(consoleT), mean(apiT)
			b.ReportMetric(float64(cp), "console-p99-ns")
			b.ReportMetric(float64(ap), "api-p99-ns")
			b.ReportMetric(float64(cp)/float64(ap), "p99-ratio")
			b.ReportMetric(float64(cm), "console-mean-ns")
			b.ReportMetric(float64(am), "api-mean-ns")
			b.ReportMetric(float64(cm)/float64(am), "mean-ratio")
		})
	}
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}
