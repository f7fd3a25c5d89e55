package events_test

import (
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// The outbox depth is read per stream at scrape time; a poll's acknowledgements count as
// deliveries and its setErrs as rejections.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, events.WithRegisterer(reg))
	a, b := f.pollStream(t), f.pollStream(t)
	emit(t, f.tr, revokedEvent("d1"), revokedEvent("d2"))
	if _, err := f.tr.SetStatus(t.Context(), rx, b.StreamID, events.StatusDisabled, ""); err != nil {
		t.Fatal(err)
	}
	if got := outboxDepth(t, reg); len(got) != 2 || got[a.StreamID] != 2 || got[b.StreamID] != 0 {
		t.Fatalf("outbox depth = %v", got)
	}
	pr := decodePoll(t, poll(t, f.tr, a.StreamID, `{"returnImmediately":true}`))
	req := posture.PollRequest{ReturnImmediately: true, SETErrs: map[string]posture.SETErr{}}
	for jti := range pr.SETs {
		if len(req.Ack) == 0 {
			req.Ack = append(req.Ack, jti)
		} else {
			req.SETErrs[jti] = posture.SETErr{Err: "invalid_key"}
		}
	}
	body, _ := json.Marshal(req)
	decodePoll(t, poll(t, f.tr, a.StreamID, string(body)))
	if got := outboxDepth(t, reg); got[a.StreamID] != 0 {
		t.Errorf("outbox depth after the poll = %v", got)
	}
	for result, want := range map[string]float64{events.ResultDelivered: 1, events.ResultRejected: 1} {
		if v := testutil.ToFloat64(f.tr.Deliveries("poll", result)); v != want {
			t.Errorf("poll %s = %v, want %v", result, v, want)
		}
	}
}

func outboxDepth(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "hale_ssf_outbox_events" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[label(m, "stream")] = m.GetGauge().GetValue()
		}
	}
	return got
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
