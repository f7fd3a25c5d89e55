package events_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// polledDevices polls the stream, acknowledging everything, and returns the sub_id of each SET
// in the order of their events' devices, sorted.
func polledDevices(t *testing.T, f *fixture, id string) []string {
	t.Helper()
	pr := decodePoll(t, poll(t, f.tr, id, `{"returnImmediately":true}`))
	var devs, jtis []string
	for j, set := range pr.SETs {
		devs, jtis = append(devs, f.signer.verify(t, set).SubID.ID), append(jtis, j)
	}
	ack, _ := json.Marshal(posture.PollRequest{Ack: jtis, ReturnImmediately: true, MaxEvents: new(int)})
	decodePoll(t, poll(t, f.tr, id, string(ack)))
	slices.Sort(devs)
	return devs
}

func TestSubjects(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	id := s.StreamID
	subject := func(op, dev string, want int) {
		t.Helper()
		rec := f.do(t, "POST", "/ssf/v1/subjects/"+op, `{"stream_id":"`+id+`","subject":{"format":"opaque","id":"`+dev+`"},"verified":true}`)
		if rec.Code != want || (want == 200 && rec.Body.Len() != 0) {
			t.Fatalf("%s %s: %d %s", op, dev, rec.Code, rec.Body)
		}
	}
	everyone := func() { emit(t, f.tr, revokedEvent("d1"), revokedEvent("d2"), revokedEvent("d3")) }
	mode := func(want string) {
		t.Helper()
		if got, _ := f.tr.GetStream(t.Context(), rx, id); got.Subjects != want {
			t.Fatalf("subjects = %q, want %q", got.Subjects, want)
		}
	}

	everyone()
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("a new stream carries %v, want every device", got)
	}
	// Removing from an all-devices stream excludes; adding the excluded device back includes it.
	subject("remove", "d2", http.StatusNoContent)
	everyone()
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d1", "d3"}) {
		t.Fatalf("after removing d2: %v", got)
	}
	subject("add", "d2", http.StatusOK)
	mode("all")
	everyone()
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d1", "d2", "d3"}) {
		t.Fatalf("after adding d2 back: %v", got)
	}
	// Adding a device makes the stream carry only the devices added.
	subject("add", "d1", http.StatusOK)
	subject("add", "d3", http.StatusOK)
	subject("add", "d3", http.StatusOK) // twice is once
	mode("listed")
	everyone()
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d1", "d3"}) {
		t.Fatalf("listed d1, d3: %v", got)
	}
	subject("remove", "d1", http.StatusNoContent)
	subject("remove", "d9", http.StatusNoContent) // not listed: nothing to do
	everyone()
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d3"}) {
		t.Fatalf("listed d3: %v", got)
	}
	// Emptied, a listed stream carries no device, but its own verification still goes.
	subject("remove", "d3", http.StatusNoContent)
	mode("listed")
	everyone()
	if rec := f.do(t, "POST", "/ssf/v1/verify", `{"stream_id":"`+id+`"}`); rec.Code != 204 {
		t.Fatalf("verify: %d", rec.Code)
	}
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{id}) {
		t.Fatalf("emptied listed stream: %v, want only its verification", got)
	}
}

// Verification answers 204 and puts a verification SET, about the stream, echoing state, in
// its outbox; asked again too soon, it answers 429.
func TestVerifyEchoesState(t *testing.T) {
	f := newFixture(t, events.WithMinVerificationInterval(time.Hour))
	s := f.pollStream(t)
	other := f.pollStream(t)
	const state = "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="
	if rec := f.do(t, "POST", "/ssf/v1/verify", `{"stream_id":"`+s.StreamID+`","state":"`+state+`"}`); rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("verify: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(t, "POST", "/ssf/v1/verify", `{"stream_id":"`+s.StreamID+`"}`); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second verification within the interval: %d %v", rec.Code, rec.Header())
	}
	if n := f.tr.Pending(other.StreamID); n != 0 {
		t.Errorf("verification reached another stream: %d", n)
	}
	pr := decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true}`))
	if len(pr.SETs) != 1 {
		t.Fatalf("sets = %v", pr.SETs)
	}
	for _, set := range pr.SETs {
		c := f.signer.verify(t, set)
		var ev posture.VerificationEvent
		if err := json.Unmarshal(c.Events[posture.EventVerification], &ev); err != nil || ev.State != state ||
			c.SubID != (posture.SubjectID{Format: "opaque", ID: s.StreamID}) || c.Audience != "poller" || len(c.Events) != 1 {
			t.Errorf("verification claims = %+v (state %q)", c, ev.State)
		}
	}
}

// Paused streams hold events and deliver them once enabled; disabled streams drop what waits
// and take nothing until enabled.
func TestStreamStatus(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	id := s.StreamID
	setStatus := func(status string) {
		t.Helper()
		rec := f.do(t, "POST", "/ssf/v1/status", `{"stream_id":"`+id+`","status":"`+status+`","reason":"maintenance"}`)
		var st events.StreamStatus
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil || st != (events.StreamStatus{StreamID: id, Status: status, Reason: "maintenance"}) {
			t.Fatalf("set %s: %d %s", status, rec.Code, rec.Body)
		}
		rec = f.do(t, "GET", "/ssf/v1/status?stream_id="+id, "")
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil || st.Status != status {
			t.Fatalf("read %s: %d %s", status, rec.Code, rec.Body)
		}
	}

	setStatus(events.StatusPaused)
	emit(t, f.tr, revokedEvent("d1"))
	if n := f.tr.Pending(id); n != 1 {
		t.Errorf("paused stream holds %d events, want 1", n)
	}
	if pr := decodePoll(t, poll(t, f.tr, id, `{"returnImmediately":true}`)); len(pr.SETs) != 0 {
		t.Errorf("a paused stream transmitted %d events", len(pr.SETs))
	}
	setStatus(events.StatusEnabled)
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("held event after enabling: %v", got)
	}

	emit(t, f.tr, revokedEvent("d2"))
	setStatus(events.StatusDisabled)
	emit(t, f.tr, revokedEvent("d3"))
	if n := f.tr.Pending(id); n != 0 {
		t.Errorf("disabled stream holds %d events", n)
	}
	if rec := f.do(t, "POST", "/ssf/v1/verify", `{"stream_id":"`+id+`"}`); rec.Code != http.StatusConflict {
		t.Errorf("verify a disabled stream: %d", rec.Code)
	}
	setStatus(events.StatusEnabled)
	emit(t, f.tr, revokedEvent("d4"))
	if got := polledDevices(t, f, id); !slices.Equal(got, []string{"d4"}) {
		t.Errorf("after re-enabling: %v, want only what came after", got)
	}
}

// A paused push stream is not delivered; enabled, it delivers what it held. A changed
// endpoint takes effect at once.
func TestPushFollowsStatusAndEndpoint(t *testing.T) {
	f := newFixture(t)
	first, second := newReceiver(t, nil), newReceiver(t, nil)
	run(t, f.tr)
	s := f.pushStream(t, first.srv.URL+"/events")
	id := s.StreamID
	if _, err := f.tr.SetStatus(t.Context(), rx, id, events.StatusPaused, ""); err != nil {
		t.Fatal(err)
	}
	emit(t, f.tr, revokedEvent("d1"))
	time.Sleep(50 * time.Millisecond) // many backoff periods: a running deliverer would have pushed
	if n := len(first.got()); n != 0 || f.tr.Pending(id) != 1 {
		t.Fatalf("paused stream: %d pushes, %d pending", n, f.tr.Pending(id))
	}
	if _, err := f.tr.SetStatus(t.Context(), rx, id, events.StatusEnabled, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held event", func() bool { return len(first.got()) == 1 && f.tr.Pending(id) == 0 })

	next := events.Delivery{Method: events.MethodPush, EndpointURL: second.srv.URL + "/events"}
	if _, err := f.tr.UpdateStream(t.Context(), rx, id, events.Patch{Delivery: &next}, false, nil); err != nil {
		t.Fatal(err)
	}
	emit(t, f.tr, revokedEvent("d2"))
	waitFor(t, "delivery to the new endpoint", func() bool { return len(second.got()) == 1 })
	if n := len(first.got()); n != 1 {
		t.Errorf("the old endpoint got %d pushes", n)
	}
}
