package access

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/halemdm/hale/remediation"
)

// BenchmarkDeviceAnswer is the cost of asking for remediation on GET /access/v1/devices/{id}:
// "cached" is the hot path as every backend calls it (the index's cached bytes; its baseline),
// "remediation" the same denied device's answer with Accept-Language, which adds the catalog's
// words for its two reasons in Spanish. The ratio of the two is what a messaging app pays to show
// its user what to fix, and only on a denial or warning it chooses to explain.
func BenchmarkDeviceAnswer(b *testing.B) {
	x := NewIndex(WithClock(func() time.Time { return t0 }))
	x.MarkLoaded()
	x.Put(pastGrace("d1"), t0)
	for _, c := range []struct {
		name, lang string
	}{{"cached", ""}, {"remediation", "es-ES,es;q=0.9"}} {
		h := RemediationHandler(x, remediation.HelpDesk{Name: "IT"})
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest(http.MethodGet, "/access/v1/devices/d1", nil)
			r.SetPathValue("id", "d1")
			if c.lang != "" {
				r.Header.Set("Accept-Language", c.lang)
			}
			for b.Loop() {
				w := httptest.NewRecorder()
				h(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
