package events_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

func TestPollRedeliversUntilAcked(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	emit(t, f.tr, revokedEvent("dev-1"))

	first := decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true}`))
	if len(first.SETs) != 1 || first.MoreAvailable {
		t.Fatalf("first poll = %+v", first)
	}
	var jti string
	for j, set := range first.SETs {
		jti = j
		if c := f.signer.verify(t, set); c.ID != j || c.SubID.ID != "dev-1" {
			t.Errorf("SET %s claims %+v", j, c)
		}
	}
	again := decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true}`))
	if !maps.Equal(again.SETs, first.SETs) {
		t.Errorf("unacknowledged SET not redelivered: %+v", again)
	}

	acked := decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true,"ack":["`+jti+`","unknown-jti"]}`))
	if len(acked.SETs) != 0 {
		t.Errorf("poll after ack = %+v", acked)
	}
	if n := f.tr.Pending(s.StreamID); n != 0 {
		t.Errorf("pending after ack = %d", n)
	}
	if st, _ := f.tr.GetStream(t.Context(), rx, s.StreamID); st.LastDeliveredAt.IsZero() {
		t.Errorf("status after ack = %+v", st)
	}
}

func TestPollMaxEventsAndOrder(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	for i := range 5 {
		emit(t, f.tr, revokedEvent(fmt.Sprintf("dev-%d", i)))
	}
	pr := decodePoll(t, poll(t, f.tr, s.StreamID, `{"maxEvents":2,"returnImmediately":true}`))
	if len(pr.SETs) != 2 || !pr.MoreAvailable {
		t.Fatalf("poll = %+v", pr)
	}
	var devs, jtis []string
	for j, set := range pr.SETs {
		devs = append(devs, f.signer.verify(t, set).SubID.ID)
		jtis = append(jtis, j)
	}
	slices.Sort(devs)
	if !slices.Equal(devs, []string{"dev-0", "dev-1"}) {
		t.Errorf("first page = %v, want the two oldest", devs)
	}
	ack, _ := json.Marshal(posture.PollRequest{Ack: jtis, ReturnImmediately: true})
	pr = decodePoll(t, poll(t, f.tr, s.StreamID, string(ack)))
	if len(pr.SETs) != 3 || pr.MoreAvailable {
		t.Errorf("second page = %d sets, more %v", len(pr.SETs), pr.MoreAvailable)
	}
	// maxEvents 0 only acknowledges.
	if pr := decodePoll(t, poll(t, f.tr, s.StreamID, `{"maxEvents":0}`)); len(pr.SETs) != 0 {
		t.Errorf("maxEvents 0 returned %d sets", len(pr.SETs))
	}
	// An empty body is a poll with defaults.
	if pr := decodePoll(t, poll(t, f.tr, s.StreamID, ``)); len(pr.SETs) != 3 {
		t.Errorf("empty-body poll returned %d sets", len(pr.SETs))
	}
}

func TestPollSetErrsDropAndRecord(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	emit(t, f.tr, revokedEvent("dev-1"), revokedEvent("dev-2"))
	pr := decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true}`))
	var bad string
	for j, set := range pr.SETs {
		if f.signer.verify(t, set).SubID.ID == "dev-1" {
			bad = j
		}
	}
	pr = decodePoll(t, poll(t, f.tr, s.StreamID, `{"returnImmediately":true,"setErrs":{"`+bad+`":{"err":"invalid_key","description":"kid unknown"}}}`))
	if len(pr.SETs) != 1 {
		t.Fatalf("after setErrs: %+v", pr)
	}
	if _, ok := pr.SETs[bad]; ok {
		t.Error("rejected SET is still delivered")
	}
	st, _ := f.tr.GetStream(t.Context(), rx, s.StreamID)
	if !strings.Contains(st.LastError, "invalid_key") {
		t.Errorf("LastError = %q", st.LastError)
	}
}

func TestLongPollWakesOnEmit(t *testing.T) {
	f := newFixture(t, events.WithPollWait(time.Minute))
	s := f.pollStream(t)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- poll(t, f.tr, s.StreamID, `{}`) }()
	// Wait until the poll is parked on the stream's signal, so the Emit below is what wakes it.
	waitFor(t, "the poll to wait", func() bool { return f.tr.PollWaiting(s.StreamID) })
	emit(t, f.tr, revokedEvent("dev-1"))
	select {
	case rec := <-done:
		if pr := decodePoll(t, rec); len(pr.SETs) != 1 {
			t.Errorf("long poll returned %+v", pr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll was not woken by Emit")
	}
}

func TestLongPollTimesOutEmpty(t *testing.T) {
	f := newFixture(t, events.WithPollWait(20*time.Millisecond))
	s := f.pollStream(t)
	rec := poll(t, f.tr, s.StreamID, `{"returnImmediately":false}`)
	if pr := decodePoll(t, rec); len(pr.SETs) != 0 || pr.SETs == nil {
		t.Errorf("empty long poll = %s", rec.Body)
	}
	if strings.TrimSpace(rec.Body.String()) != `{"sets":{}}` {
		t.Errorf("body = %s", rec.Body)
	}
}

func TestPollErrors(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	pushS := f.pushStream(t, "https://receiver.example/")
	cases := []struct {
		name, id, body string
		status         int
	}{
		{"bad JSON", s.StreamID, `{"ack":`, 400},
		{"wrong type", s.StreamID, `{"ack":"jti"}`, 400},
		{"unknown field", s.StreamID, `{"acks":[]}`, 400},
		{"negative maxEvents", s.StreamID, `{"maxEvents":-1}`, 400},
		{"oversized body", s.StreamID, `{"ack":["` + strings.Repeat("a", 70<<10) + `"]}`, 413},
		{"unknown stream", "ss_nope", `{}`, 404},
		{"push stream", pushS.StreamID, `{}`, 409},
	}
	for _, c := range cases {
		rec := poll(t, f.tr, c.id, c.body)
		var p problem.Details
		if rec.Code != c.status || rec.Header().Get("Content-Type") != problem.ContentType ||
			json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != c.status {
			t.Errorf("%s: %d %s %s", c.name, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/poll/"+s.StreamID, nil)
	req.SetPathValue("id", s.StreamID)
	f.tr.PollHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET poll: %d", rec.Code)
	}
}

func TestPollMaxEventsCapped(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	evs := make([]events.Event, events.MaxMaxEvents+5)
	for i := range evs {
		evs[i] = revokedEvent(fmt.Sprintf("dev-%d", i))
	}
	emit(t, f.tr, evs...)
	pr := decodePoll(t, poll(t, f.tr, s.StreamID, `{"maxEvents":100000,"returnImmediately":true}`))
	if len(pr.SETs) != events.MaxMaxEvents || !pr.MoreAvailable {
		t.Errorf("poll returned %d sets (more %v), want the cap %d", len(pr.SETs), pr.MoreAvailable, events.MaxMaxEvents)
	}
}

func FuzzPollRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`, ``, `{"maxEvents":5,"returnImmediately":true}`, `{"ack":["a","b"]}`,
		`{"setErrs":{"x":{"err":"invalid_request","description":"d"}}}`, `{"maxEvents":-3}`,
		`{"maxEvents":1e400}`, `{"ack":[null]}`, `[]`, `null`, `{"setErrs":{"x":null}}`,
	} {
		f.Add(seed)
	}
	fx := newFixture(f, events.WithPollWait(0))
	s := fx.pollStream(f)
	emit(f, fx.tr, revokedEvent("dev-1"), revokedEvent("dev-2"))
	f.Fuzz(func(t *testing.T, body string) {
		rec := poll(t, fx.tr, s.StreamID, body)
		switch rec.Code {
		case http.StatusOK:
			var pr posture.PollResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &pr); err != nil || pr.SETs == nil {
				t.Fatalf("200 with body %s", rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var p problem.Details
			if json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != rec.Code {
				t.Fatalf("%d with body %s", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("poll %q answered %d %s", body, rec.Code, rec.Body)
		}
	})
}
