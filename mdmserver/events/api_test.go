package events_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/posture"
)

func TestConfigurationHandler(t *testing.T) {
	f := newFixture(t)
	rec := httptest.NewRecorder()
	f.tr.ConfigurationHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/ssf-configuration", nil))
	var got map[string]any
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	want := map[string]any{
		"spec_version":               "1_0",
		"issuer":                     testIssuer,
		"jwks_uri":                   testIssuer + "/access/v1/jwks.json",
		"delivery_methods_supported": []any{events.MethodPush, events.MethodPoll},
		"configuration_endpoint":     testIssuer + "/ssf/v1/stream",
		"status_endpoint":            testIssuer + "/ssf/v1/status",
		"add_subject_endpoint":       testIssuer + "/ssf/v1/subjects/add",
		"remove_subject_endpoint":    testIssuer + "/ssf/v1/subjects/remove",
		"verification_endpoint":      testIssuer + "/ssf/v1/verify",
		"authorization_schemes":      []any{map[string]any{"spec_urn": "urn:ietf:rfc:6750"}},
		"default_subjects":           "ALL",
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		t.Errorf("configuration = %s\nwant %s", gb, wb)
	}
}

// A receiver creates, reads, lists, patches, replaces and deletes its own stream with the SSF
// stream API; the answers carry SSF's members.
func TestStreamLifecycle(t *testing.T) {
	f := newFixture(t)
	s := decodeStream(t, f.do(t, "POST", "/ssf/v1/stream", `{"events_requested":["`+posture.EventSessionRevoked+`","urn:example:unknown"]}`), 201)
	pollURL := testIssuer + "/ssf/v1/streams/" + s.StreamID + "/poll"
	if s.Issuer != testIssuer || s.Delivery != (events.Delivery{Method: events.MethodPoll, EndpointURL: pollURL}) || s.Audience != pollURL ||
		!slices.Equal(s.EventsSupported, events.Supported) || !slices.Equal(s.EventsDelivered, []string{posture.EventSessionRevoked}) ||
		!slices.Equal(s.EventsRequested, []string{posture.EventSessionRevoked, "urn:example:unknown"}) ||
		s.Status != events.StatusEnabled || s.Subjects != "all" || s.Owner != rx.ID || !s.CreatedAt.Equal(testNow) {
		t.Fatalf("created %+v", s)
	}

	got := decodeStream(t, f.do(t, "GET", "/ssf/v1/stream?stream_id="+s.StreamID, ""), 200)
	if got.StreamID != s.StreamID || got.Audience != s.Audience {
		t.Errorf("read %+v", got)
	}
	rec := f.do(t, "GET", "/ssf/v1/stream", "")
	var list []events.Stream
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list) != 1 || list[0].StreamID != s.StreamID {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}

	// PATCH changes what it names and keeps the rest.
	p := decodeStream(t, f.do(t, "PATCH", "/ssf/v1/stream", `{"stream_id":"`+s.StreamID+`","description":"ward 7 chat"}`), 200)
	if p.Description != "ward 7 chat" || !slices.Equal(p.EventsDelivered, []string{posture.EventSessionRevoked}) {
		t.Errorf("patched %+v", p)
	}
	// PUT replaces: what it leaves out goes (events_requested: back to every type).
	body, _ := json.Marshal(p) // the stream as read, sent back whole
	var asRead map[string]any
	_ = json.Unmarshal(body, &asRead)
	delete(asRead, "events_requested")
	delete(asRead, "events_delivered") // it will change; sent, it must match the old value
	body, _ = json.Marshal(asRead)
	r := decodeStream(t, f.do(t, "PUT", "/ssf/v1/stream", string(body)), 200)
	if !slices.Equal(r.EventsDelivered, events.Supported) || r.Description != "ward 7 chat" || r.Audience != s.Audience {
		t.Errorf("replaced %+v", r)
	}

	if rec := f.do(t, "DELETE", "/ssf/v1/stream?stream_id="+s.StreamID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(t, "GET", "/ssf/v1/stream?stream_id="+s.StreamID, ""); rec.Code != 404 {
		t.Errorf("read after delete: %d", rec.Code)
	}
	if rec := f.do(t, "GET", "/ssf/v1/stream", ""); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("list after delete: %s", rec.Body)
	}
}

func TestStreamRequestsRefused(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	id := s.StreamID
	for _, c := range []struct {
		method, target, body string
		status               int
	}{
		{"POST", "/ssf/v1/stream", `{"delivery":"poll","audience":"old API"}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"carrier-pigeon"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"ftp://r.example/"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"http://r.example/"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPush + `"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"https://u:p@r.example/"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"https://r.example/","authorization_header":"Bearer x\r\nX-Evil: 1"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPoll + `","authorization_header":"Bearer x"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"delivery":{"method":"` + events.MethodPoll + `","endpoint_url":"https://elsewhere.example/"}}`, 400},
		{"POST", "/ssf/v1/stream", `{"aud":"` + strings.Repeat("a", 257) + `"}`, 400},
		{"POST", "/ssf/v1/stream", `{"description":"` + strings.Repeat("d", 513) + `"}`, 400},
		{"POST", "/ssf/v1/stream", `{"stream_id":"mine"}`, 400},
		{"POST", "/ssf/v1/stream", `{`, 400},
		{"POST", "/ssf/v1/stream", `{"events_requested":["` + strings.Repeat("u", 600) + `"]}`, 400},
		{"PATCH", "/ssf/v1/stream", `{"description":"no id"}`, 400},
		{"PATCH", "/ssf/v1/stream", `{"stream_id":"` + id + `","aud":"another"}`, 400},
		{"PATCH", "/ssf/v1/stream", `{"stream_id":"` + id + `","iss":"https://evil.example"}`, 400},
		{"PATCH", "/ssf/v1/stream", `{"stream_id":"` + id + `","events_delivered":[]}`, 400},
		{"PATCH", "/ssf/v1/stream", `{"stream_id":"ss_nope","description":"x"}`, 404},
		{"DELETE", "/ssf/v1/stream", ``, 400},
		{"GET", "/ssf/v1/status", ``, 400},
		{"POST", "/ssf/v1/status", `{"stream_id":"` + id + `","status":"asleep"}`, 400},
		{"POST", "/ssf/v1/subjects/add", `{"stream_id":"` + id + `","subject":{"format":"email","email":"a@b.example"}}`, 400},
		{"POST", "/ssf/v1/subjects/add", `{"stream_id":"` + id + `","subject":{"format":"opaque","id":""}}`, 400},
		{"POST", "/ssf/v1/subjects/remove", `{"stream_id":"` + id + `","subject":{"format":"opaque","id":"` + id + `"}}`, 400},
		{"POST", "/ssf/v1/verify", `{"state":"no id"}`, 400},
		{"POST", "/ssf/v1/verify", `{"stream_id":"` + id + `","state":"` + strings.Repeat("s", 1025) + `"}`, 400},
	} {
		rec := f.do(t, c.method, c.target, c.body)
		if rec.Code != c.status || rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("%s %s %.80s: %d %s", c.method, c.target, c.body, rec.Code, rec.Body)
		}
	}
	if l, _ := f.tr.ListStreams(t.Context(), events.Caller{ReadAll: true}); len(l) != 1 {
		t.Errorf("refused requests stored streams: %+v", l)
	}
	if got, _ := f.tr.GetStream(t.Context(), rx, id); got.Description != "" || got.Audience != "poller" {
		t.Errorf("refused requests changed the stream: %+v", got)
	}
}

// Another receiver's stream is not there: every call on it answers 404 and changes nothing,
// the poll and its acknowledgement included. Callers who may read all see it and may delete
// it, but cannot poll it.
func TestStreamBelongsToItsCreator(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	id := s.StreamID
	emit(t, f.tr, revokedEvent("dev-1"))
	var jti string
	for j := range decodePoll(t, poll(t, f.tr, id, `{"returnImmediately":true}`)).SETs {
		jti = j
	}
	for _, as := range []string{"tok_other", "tok_security*"} {
		for _, c := range []struct{ method, target, body string }{
			{"POST", "/ssf/v1/streams/" + id + "/poll", `{"ack":["` + jti + `"],"returnImmediately":true}`},
			{"PATCH", "/ssf/v1/stream", `{"stream_id":"` + id + `","description":"mine now"}`},
			{"PUT", "/ssf/v1/stream", `{"stream_id":"` + id + `","delivery":{"method":"` + events.MethodPush + `","endpoint_url":"https://attacker.example/"}}`},
			{"POST", "/ssf/v1/status", `{"stream_id":"` + id + `","status":"disabled"}`},
			{"POST", "/ssf/v1/subjects/add", `{"stream_id":"` + id + `","subject":{"format":"opaque","id":"d_x"}}`},
			{"POST", "/ssf/v1/subjects/remove", `{"stream_id":"` + id + `","subject":{"format":"opaque","id":"dev-1"}}`},
			{"POST", "/ssf/v1/verify", `{"stream_id":"` + id + `"}`},
		} {
			if rec := f.do(t, c.method, c.target, c.body, as); rec.Code != 404 {
				t.Errorf("%s: %s %s: %d %s", as, c.method, c.target, rec.Code, rec.Body)
			}
		}
	}
	for _, target := range []string{"/ssf/v1/stream?stream_id=" + id, "/ssf/v1/status?stream_id=" + id} {
		if rec := f.do(t, "GET", target, "", "tok_other"); rec.Code != 404 {
			t.Errorf("other receiver GET %s: %d", target, rec.Code)
		}
		if rec := f.do(t, "GET", target, "", "tok_security*"); rec.Code != 200 {
			t.Errorf("read-all GET %s: %d", target, rec.Code)
		}
	}
	if rec := f.do(t, "DELETE", "/ssf/v1/stream?stream_id="+id, "", "tok_other"); rec.Code != 404 {
		t.Errorf("other receiver DELETE: %d", rec.Code)
	}
	if rec := f.do(t, "GET", "/ssf/v1/stream", "", "tok_other"); strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("other receiver's list: %s", rec.Body)
	}

	got, err := f.tr.GetStream(t.Context(), rx, id)
	if err != nil || got.Pending != 1 || got.Description != "" || got.Status != events.StatusEnabled || got.Subjects != "all" ||
		got.Delivery.Method != events.MethodPoll {
		t.Fatalf("the stream changed: %+v %v", got, err)
	}
	if pr := decodePoll(t, poll(t, f.tr, id, `{"returnImmediately":true}`)); len(pr.SETs) != 1 || pr.SETs[jti] == "" {
		t.Fatalf("the owner's event is gone: %+v", pr)
	}
	if rec := f.do(t, "DELETE", "/ssf/v1/stream?stream_id="+id, "", "tok_security*"); rec.Code != 204 {
		t.Errorf("delete-all DELETE: %d %s", rec.Code, rec.Body)
	}
}

// Streams made before streams had owners belong to nobody: admin and security read and delete
// them; nobody polls, changes or verifies them; a poll stream gets no new events (nobody could
// take them), a push stream keeps being delivered.
func TestStreamWithoutOwner(t *testing.T) {
	f := newFixture(t)
	// As the releases before owners stored them (boltstore's tests read their exact records).
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	err := f.db.Update(t.Context(), func(tx storage.Tx) error {
		r := tx.Events()
		if err := r.PutStream(t.Context(), &events.StreamRecord{ID: "ss_oldpoll", Delivery: "poll", Audience: "messaging",
			EventsRequested: []string{posture.EventSessionRevoked}, CreatedAt: created}); err != nil {
			return err
		}
		return r.PutStream(t.Context(), &events.StreamRecord{ID: "ss_oldpush", Delivery: "push", EndpointURL: "https://backend.example/ssf",
			Audience: "backend", EventsRequested: []string{posture.EventSessionRevoked}, CreatedAt: created})
	})
	if err != nil {
		t.Fatal(err)
	}
	emit(t, f.tr, revokedEvent("dev-1"))
	if n := f.tr.Pending("ss_oldpoll"); n != 0 {
		t.Errorf("unowned poll stream got %d events", n)
	}
	if n := f.tr.Pending("ss_oldpush"); n != 1 {
		t.Errorf("unowned push stream got %d events, want 1", n)
	}
	for _, as := range []string{"tok_any", "tok_admin*"} {
		if rec := poll(t, f.tr, "ss_oldpoll", `{}`, strings.TrimSuffix(as, "*")); rec.Code != 404 {
			t.Errorf("%s polled an unowned stream: %d", as, rec.Code)
		}
		if rec := f.do(t, "POST", "/ssf/v1/verify", `{"stream_id":"ss_oldpoll"}`, as); rec.Code != 404 {
			t.Errorf("%s verified an unowned stream: %d", as, rec.Code)
		}
	}
	old := decodeStream(t, f.do(t, "GET", "/ssf/v1/stream?stream_id=ss_oldpoll", "", "tok_admin*"), 200)
	if old.Owner != "" || old.Audience != "messaging" || old.Delivery.Method != events.MethodPoll || old.Status != events.StatusEnabled {
		t.Errorf("unowned stream reads %+v", old)
	}
	if rec := f.do(t, "DELETE", "/ssf/v1/stream?stream_id=ss_oldpoll", "", "tok_admin*"); rec.Code != 204 {
		t.Errorf("admin delete of an unowned stream: %d", rec.Code)
	}
}

func TestStreamsPerOwnerBounded(t *testing.T) {
	f := newFixture(t)
	for range events.MaxStreamsPerOwner {
		f.pollStream(t)
	}
	if rec := f.do(t, "POST", "/ssf/v1/stream", `{}`); rec.Code != http.StatusConflict {
		t.Errorf("stream %d: %d %s", events.MaxStreamsPerOwner+1, rec.Code, rec.Body)
	}
	if rec := f.do(t, "POST", "/ssf/v1/stream", `{}`, "tok_other"); rec.Code != http.StatusCreated {
		t.Errorf("another receiver's first stream: %d %s", rec.Code, rec.Body)
	}
	if _, err := f.tr.CreateStream(t.Context(), events.Caller{}, events.Config{}); err == nil {
		t.Error("a stream was created without a caller identity")
	}
}

func TestAuthorizationHeaderSealedAndNeverReturned(t *testing.T) {
	const secret = "Bearer sup3r-s3cret-receiver-token"
	f := newFixture(t)
	s := f.pushStream(t, "https://receiver.example/events", func(c *events.Config) { c.Delivery.AuthorizationHeader = secret })
	if s.Delivery.AuthorizationHeader != "" || !s.AuthorizationSet {
		t.Errorf("CreateStream returned %+v", s)
	}
	err := f.db.View(t.Context(), func(tx storage.Tx) error {
		recs, err := tx.Events().Streams(t.Context())
		for _, rec := range recs {
			if v := fmt.Sprintf("%+v %q", rec, rec.AuthSealed); strings.Contains(v, "sup3r-s3cret") {
				t.Errorf("stream %s is stored with the Authorization header in the clear: %s", rec.ID, v)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/ssf/v1/stream", "/ssf/v1/stream?stream_id=" + s.StreamID} {
		if body := f.do(t, "GET", target, "").Body.String(); strings.Contains(body, "sup3r-s3cret") || strings.Contains(body, "authorization_header") {
			t.Errorf("GET %s carries the Authorization header: %s", target, body)
		}
	}

	// A patch that leaves delivery alone, or repeats the endpoint, keeps the header; a new
	// endpoint does not inherit it (it would carry the receiver's secret elsewhere).
	patch := func(body string) events.Stream {
		return decodeStream(t, f.do(t, "PATCH", "/ssf/v1/stream", `{"stream_id":"`+s.StreamID+`",`+body+`}`), 200)
	}
	if p := patch(`"description":"d"`); !p.AuthorizationSet {
		t.Error("a patch without delivery dropped the Authorization header")
	}
	if p := patch(`"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"https://receiver.example/events"}`); !p.AuthorizationSet {
		t.Error("a patch repeating the endpoint dropped the Authorization header")
	}
	if p := patch(`"delivery":{"method":"` + events.MethodPush + `","endpoint_url":"https://other.example/events"}`); p.AuthorizationSet {
		t.Error("a new endpoint inherited the Authorization header")
	}

	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("sup3r-s3cret")) {
		t.Error("the database file contains the Authorization header in the clear")
	}
}
