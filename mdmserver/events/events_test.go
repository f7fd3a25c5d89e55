package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

func TestEmitFansOutByRequestedEvents(t *testing.T) {
	f := newFixture(t)
	all := f.pollStream(t)
	revokedOnly, err := f.tr.CreateStream(context.Background(), Stream{
		Delivery: DeliveryPoll, Audience: "revocations", EventsRequested: []string{posture.EventSessionRevoked},
	})
	if err != nil {
		t.Fatal(err)
	}
	emit(t, f.tr, complianceEvent("dev-1"), revokedEvent("dev-1"), revokedEvent("dev-2"))
	if n := f.tr.Pending(all.ID); n != 3 {
		t.Errorf("stream with both types: pending %d, want 3", n)
	}
	if n := f.tr.Pending(revokedOnly.ID); n != 2 {
		t.Errorf("session-revoked stream: pending %d, want 2", n)
	}
	pr := decodePoll(t, poll(t, f.tr, revokedOnly.ID, `{"returnImmediately":true}`))
	for _, set := range pr.SETs {
		c := f.signer.verify(t, set)
		if _, ok := c.Events[posture.EventSessionRevoked]; !ok || len(c.Events) != 1 || c.Audience != "revocations" {
			t.Errorf("claims = %+v", c)
		}
		var ev posture.CAEPEvent
		_ = json.Unmarshal(c.Events[posture.EventSessionRevoked], &ev)
		if ev.PreviousStatus != "" || ev.EventTimestamp != testNow.Unix() || ev.ReasonCode != posture.ReasonWiped {
			t.Errorf("session-revoked body = %+v", ev)
		}
	}
}

func TestEmitValidatesAndIsAllOrNothing(t *testing.T) {
	f := newFixture(t)
	if err := f.tr.Emit(context.Background(), revokedEvent("dev-1")); err != nil {
		t.Fatalf("emit with no streams: %v", err)
	}
	s := f.pollStream(t)
	bad := []Event{
		{Type: "https://example.com/other", DeviceID: "d"},
		{Type: posture.EventSessionRevoked},
		{Type: posture.EventComplianceChange, DeviceID: "d"},
		{Type: posture.EventComplianceChange, DeviceID: "d", PreviousStatus: "compliant", CurrentStatus: "bad"},
		{Type: posture.EventSessionRevoked, DeviceID: "d", Initiator: "robot"},
	}
	for _, ev := range bad {
		if err := f.tr.Emit(context.Background(), revokedEvent("ok"), ev); !errors.Is(err, ErrInvalid) {
			t.Errorf("Emit(%+v) = %v, want ErrInvalid", ev, err)
		}
	}
	if n := f.tr.Pending(s.ID); n != 0 {
		t.Errorf("pending after refused emits = %d, want 0 (nothing committed)", n)
	}
	if err := f.tr.Emit(context.Background()); err != nil {
		t.Errorf("empty emit: %v", err)
	}
}

type failingSigner struct{}

func (failingSigner) Sign(string, any) (string, error) { return "", errors.New("hsm offline") }

func TestEmitSignFailureCommitsNothing(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	f.tr.signer = failingSigner{}
	if err := f.tr.Emit(context.Background(), revokedEvent("d")); err == nil || !strings.Contains(err.Error(), "hsm offline") {
		t.Fatalf("Emit = %v", err)
	}
	if n := f.tr.Pending(s.ID); n != 0 {
		t.Errorf("pending = %d", n)
	}
}

func TestCreateStreamValidation(t *testing.T) {
	f := newFixture(t)
	push := func(url string) Stream { return Stream{Delivery: DeliveryPush, EndpointURL: url, Audience: "a"} }
	bad := map[string]Stream{
		"bad delivery":          {Delivery: "carrier-pigeon", Audience: "a"},
		"no delivery":           {Audience: "a"},
		"ftp URL":               push("ftp://receiver.example/events"),
		"http to remote host":   push("http://receiver.example/events"),
		"relative URL":          push("/events"),
		"no URL":                push(""),
		"credentials in URL":    push("https://user:pw@receiver.example/"),
		"missing audience":      {Delivery: DeliveryPush, EndpointURL: "https://r.example/"},
		"blank audience":        {Delivery: DeliveryPoll, Audience: "  "},
		"long audience":         {Delivery: DeliveryPoll, Audience: strings.Repeat("a", 257)},
		"unknown event":         {Delivery: DeliveryPoll, Audience: "a", EventsRequested: []string{"urn:x"}},
		"verification event":    {Delivery: DeliveryPoll, Audience: "a", EventsRequested: []string{posture.EventVerification}},
		"poll with URL":         {Delivery: DeliveryPoll, Audience: "a", EndpointURL: "https://r.example/"},
		"header injection":      {Delivery: DeliveryPush, EndpointURL: "https://r.example/", Audience: "a", AuthorizationHeader: "Bearer x\r\nX-Evil: 1"},
		"poll with auth header": {Delivery: DeliveryPoll, Audience: "a", AuthorizationHeader: "Bearer x"},
	}
	for name, s := range bad {
		if _, err := f.tr.CreateStream(context.Background(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if l, _ := f.tr.ListStreams(context.Background()); len(l) != 0 {
		t.Errorf("invalid streams were stored: %+v", l)
	}

	good := []Stream{
		push("https://receiver.example/events"),
		push("http://127.0.0.1:9000/events"),
		push("http://localhost/events"),
		push("http://[::1]:8080/"),
		{Delivery: "urn:ietf:rfc:8936", Audience: strings.Repeat("a", 256)},
	}
	for _, s := range good {
		got, err := f.tr.CreateStream(context.Background(), s)
		if err != nil {
			t.Errorf("%+v: %v", s, err)
			continue
		}
		if got.ID == "" || !got.CreatedAt.Equal(testNow) || !slices.Equal(got.EventsRequested, []string{posture.EventComplianceChange, posture.EventSessionRevoked}) {
			t.Errorf("created %+v", got)
		}
		if got.Delivery != DeliveryPush && got.Delivery != DeliveryPoll {
			t.Errorf("delivery not normalized: %q", got.Delivery)
		}
	}
}

func TestAuthorizationHeaderSealedAndNeverReturned(t *testing.T) {
	const secret = "Bearer sup3r-s3cret-receiver-token"
	f := newFixture(t)
	s := f.pushStream(t, "https://receiver.example/events", func(s *Stream) { s.AuthorizationHeader = secret })
	if s.AuthorizationHeader != "" || !s.AuthorizationSet {
		t.Errorf("CreateStream returned %+v", s)
	}
	err := f.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(streamsBucket).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte("sup3r-s3cret")) {
				t.Errorf("stream %s is stored with the Authorization header in the clear: %s", k, v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.tr.ListStreams(context.Background())
	if err != nil || len(list) != 1 || list[0].AuthorizationHeader != "" || !list[0].AuthorizationSet {
		t.Fatalf("ListStreams = %+v, %v", list, err)
	}
	rec := httptest.NewRecorder()
	f.tr.ListStreamsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/event-streams", nil))
	get := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/event-streams/"+s.ID, nil)
	req.SetPathValue("id", s.ID)
	f.tr.GetStreamHandler().ServeHTTP(get, req)
	for _, body := range []string{rec.Body.String(), get.Body.String()} {
		if strings.Contains(body, "sup3r-s3cret") || strings.Contains(body, "authorization_header") {
			t.Errorf("response carries the Authorization header: %s", body)
		}
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

func TestVerify(t *testing.T) {
	f := newFixture(t)
	s := f.pollStream(t)
	other := f.pollStream(t)
	if err := f.tr.Verify(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	if n := f.tr.Pending(other.ID); n != 0 {
		t.Errorf("verification reached another stream: %d", n)
	}
	pr := decodePoll(t, poll(t, f.tr, s.ID, `{"returnImmediately":true}`))
	if len(pr.SETs) != 1 {
		t.Fatalf("sets = %v", pr.SETs)
	}
	for _, set := range pr.SETs {
		c := f.signer.verify(t, set)
		if _, ok := c.Events[posture.EventVerification]; !ok || c.SubID.ID != s.ID || c.Audience != "poller" {
			t.Errorf("verification claims = %+v", c)
		}
	}
	if err := f.tr.Verify(context.Background(), "ss_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify(unknown) = %v", err)
	}
}

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
		"delivery_methods_supported": []any{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
		"configuration_endpoint":     testIssuer + "/api/v1/event-streams",
		"authorization_schemes":      []any{map[string]any{"spec_urn": "urn:ietf:rfc:6750"}},
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if !bytes.Equal(wb, gb) {
		t.Errorf("configuration = %s\nwant %s", gb, wb)
	}
}

func TestAdminHandlers(t *testing.T) {
	f := newFixture(t)
	create := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/v1/event-streams", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		f.tr.CreateStreamHandler().ServeHTTP(rec, req)
		return rec
	}
	rec := create(`{"delivery":"push","endpoint_url":"https://r.example/e","audience":"chat","authorization_header":"Bearer x"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var s Stream
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.ID == "" || rec.Header().Get("Location") != "/api/v1/event-streams/"+s.ID {
		t.Fatalf("create answered %s (Location %q)", rec.Body, rec.Header().Get("Location"))
	}

	for body, status := range map[string]int{
		`{"delivery":"push","endpoint_url":"ftp://r.example/","audience":"chat"}`: 400,
		`{"delivery":"poll"}`:                         400,
		`{"delivery":"poll","audience":"a","id":"x"}`: 400, // unknown field
		`{`: 400,
	} {
		rec := create(body)
		if rec.Code != status || rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("create %s: %d %s", body, rec.Code, rec.Body)
		}
	}

	do := func(h http.Handler, method, id string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, "/api/v1/event-streams/"+id, nil)
		req.SetPathValue("id", id)
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do(f.tr.GetStreamHandler(), "GET", s.ID); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"audience":"chat"`) {
		t.Errorf("get: %d %s", rec.Code, rec.Body)
	}
	if rec := do(f.tr.VerifyStreamHandler(), "POST", s.ID); rec.Code != http.StatusAccepted || f.tr.Pending(s.ID) != 1 {
		t.Errorf("verify: %d %s, %d pending", rec.Code, rec.Body, f.tr.Pending(s.ID))
	}
	if rec := do(f.tr.DeleteStreamHandler(), "DELETE", s.ID); rec.Code != http.StatusNoContent {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
	for _, h := range []http.Handler{f.tr.GetStreamHandler(), f.tr.DeleteStreamHandler(), f.tr.VerifyStreamHandler()} {
		if rec := do(h, "GET", s.ID); rec.Code != 404 || rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("after delete: %d %s", rec.Code, rec.Body)
		}
	}
	rec = httptest.NewRecorder()
	f.tr.ListStreamsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/event-streams", nil))
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"streams":[]}` {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	f := newFixture(t)
	if _, err := New(f.db, f.signer, "", testKey(t)); err == nil {
		t.Error("empty issuer accepted")
	}
	if _, err := New(f.db, nil, testIssuer, testKey(t)); err == nil {
		t.Error("nil signer accepted")
	}
	if _, err := New(f.db, f.signer, testIssuer, nil); err == nil {
		t.Error("nil seal key accepted")
	}
}
