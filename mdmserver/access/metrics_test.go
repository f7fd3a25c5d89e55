package access

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestIndexCollector(t *testing.T) {
	x := NewIndex()
	reg := prometheus.NewRegistry()
	reg.MustRegister(x.Collector())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP hale_decision_index_devices Devices in the in-memory decision index.
# TYPE hale_decision_index_devices gauge
hale_decision_index_devices 0
# HELP hale_decision_index_loaded 1 once the decision index holds every device's decision; until then every access check denies.
# TYPE hale_decision_index_loaded gauge
hale_decision_index_loaded 0
`)); err != nil {
		t.Fatalf("before the load: %v", err)
	}
	x.Put(&Decision{DeviceID: "d1", State: "active"}, time.Now())
	x.MarkLoaded()
	loaded := time.Now()
	time.Sleep(20 * time.Millisecond)
	x.Put(&Decision{DeviceID: "d2", State: "active"}, time.Now())
	changed := time.Now()
	time.Sleep(20 * time.Millisecond)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got["hale_decision_index_devices"] != 2 || got["hale_decision_index_loaded"] != 1 {
		t.Fatalf("gauges %v", got)
	}
	if age := got["hale_decision_index_update_age_seconds"]; age < 0.02 || age > time.Since(changed).Seconds() {
		t.Errorf("update age %v, want 20ms to %v", age, time.Since(changed).Seconds())
	}
	if age := got["hale_decision_index_load_age_seconds"]; age < 0.04 || age > time.Since(loaded).Seconds() {
		t.Errorf("load age %v, want 40ms to %v", age, time.Since(loaded).Seconds())
	}
}
