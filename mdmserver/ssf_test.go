package mdmserver_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// stream creates an event stream with the token's credential and returns it.
func (env *testEnv) stream(token, body string) events.Stream {
	env.t.Helper()
	var s events.Stream
	if code := env.call("POST", "/ssf/v1/stream", token, []byte(body), &s); code != 201 {
		env.t.Fatalf("create stream %s: %d", body, code)
	}
	return s
}

// pollSETs polls a stream with token and the request body, returning the status and SETs.
func (env *testEnv) pollSETs(token, streamID, body string) (int, map[string]string) {
	env.t.Helper()
	var pr posture.PollResponse
	code := env.call("POST", "/ssf/v1/streams/"+streamID+"/poll", token, []byte(body), &pr)
	return code, pr.SETs
}

// receiverFor verifies SETs as a backend would: signature against the server's JWKS, issuer
// and audience. It records every event it applied.
type verifiedEvent struct {
	claims posture.SETClaims
	typ    string
}

func (env *testEnv) receiverFor(aud string) (*posture.Receiver, *[]verifiedEvent) {
	env.t.Helper()
	var conf struct{ Issuer string }
	if code := env.call("GET", "/.well-known/ssf-configuration", "", nil, &conf); code != 200 || conf.Issuer == "" {
		env.t.Fatalf("SSF configuration: %d %+v", code, conf)
	}
	var got []verifiedEvent
	rx := posture.NewReceiver(posture.RemoteJWKS(env.URL+"/access/v1/jwks.json", env.Client), aud, conf.Issuer,
		posture.WithOnEvent(func(_ context.Context, set posture.SETClaims, typ string, _ posture.CAEPEvent) {
			got = append(got, verifiedEvent{set, typ})
		}))
	return rx, &got
}

// The cross-stream attack of issue 12, replayed through the real API: a second backend's
// access token cannot poll, acknowledge, read, change, verify or delete the first backend's
// stream. Each attempt answers 404, as for a stream that does not exist, and nothing changes:
// the first backend still gets its events, whose txn names the lock command behind them.
func TestStreamBoundToReceiver(t *testing.T) {
	env := newTestEnv(t)
	backendA, backendB := env.token("access"), env.token("access")
	security, auditor := env.token("security"), env.token("auditor")
	s := env.stream(backendA, `{"aud":"messaging-a"}`)
	id := s.StreamID

	agent, _ := env.compliantAgent()
	var lock securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+agent.DeviceID+"/lock", security, []byte(`{"reason":"left on the ward"}`), &lock); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	// Backend A reads its events without acknowledging them; backend B has learnt their jtis.
	var sets map[string]string
	for deadline := time.Now().Add(10 * time.Second); len(sets) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, sets = env.pollSETs(backendA, id, `{"returnImmediately":true}`)
	}
	if len(sets) == 0 {
		t.Fatal("backend A got no event for the lock")
	}
	jtis := slices.Collect(maps.Keys(sets))
	ack, _ := json.Marshal(posture.PollRequest{Ack: jtis, ReturnImmediately: true})
	var before events.Stream
	env.call("GET", "/ssf/v1/stream?stream_id="+id, backendA, nil, &before)

	for _, c := range []struct{ method, path, body string }{
		{"POST", "/ssf/v1/streams/" + id + "/poll", string(ack)},
		{"POST", "/ssf/v1/streams/" + id + "/poll", `{"returnImmediately":true}`},
		{"GET", "/ssf/v1/stream?stream_id=" + id, ""},
		{"GET", "/ssf/v1/status?stream_id=" + id, ""},
		{"PATCH", "/ssf/v1/stream", `{"stream_id":"` + id + `","description":"taken"}`},
		{"PUT", "/ssf/v1/stream", `{"stream_id":"` + id + `","delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://attacker.example/ssf"}}`},
		{"POST", "/ssf/v1/status", `{"stream_id":"` + id + `","status":"disabled"}`},
		{"POST", "/ssf/v1/subjects/remove", `{"stream_id":"` + id + `","subject":{"format":"opaque","id":"` + agent.DeviceID + `"}}`},
		{"POST", "/ssf/v1/verify", `{"stream_id":"` + id + `"}`},
		{"DELETE", "/ssf/v1/stream?stream_id=" + id, ""},
	} {
		if code := env.call(c.method, c.path, backendB, []byte(c.body), nil); code != 404 {
			t.Errorf("backend B: %s %s: %d, want 404", c.method, c.path, code)
		}
	}
	// Admin and security read every stream but poll only their own.
	for _, tok := range []string{env.Admin, security} {
		if code, _ := env.pollSETs(tok, id, string(ack)); code != 404 {
			t.Errorf("a privileged token polled backend A's stream: %d", code)
		}
	}

	var after events.Stream
	env.call("GET", "/ssf/v1/stream?stream_id="+id, backendA, nil, &after)
	if after.Pending != len(sets) || after.Description != "" || after.Status != "enabled" || after.Subjects != "all" ||
		after.Delivery != before.Delivery {
		t.Fatalf("backend A's stream changed: %+v, was %+v", after, before)
	}
	code, again := env.pollSETs(backendA, id, `{"returnImmediately":true}`)
	if code != 200 || !maps.Equal(again, sets) {
		t.Fatalf("backend A's events after the attack: %d, %d of %d", code, len(again), len(sets))
	}
	rx, got := env.receiverFor("messaging-a")
	for _, set := range again {
		if err := rx.Deliver(t.Context(), set); err != nil {
			t.Fatalf("backend A's SET does not verify: %v", err)
		}
	}
	revoked := false
	for _, ev := range *got {
		if ev.typ == posture.EventSessionRevoked && ev.claims.SubID.ID == agent.DeviceID {
			revoked = true
			if ev.claims.TXN != lock.CommandID {
				t.Errorf("session-revoked txn = %q, want the lock command %q", ev.claims.TXN, lock.CommandID)
			}
		}
	}
	if !revoked {
		t.Fatalf("no session-revoked event for the locked device: %+v", *got)
	}

	// Lists: backend B sees none; admin, security and the auditor see backend A's.
	var list []events.Stream
	if env.call("GET", "/ssf/v1/stream", backendB, nil, &list); len(list) != 0 {
		t.Errorf("backend B lists %+v", list)
	}
	for _, tok := range []string{env.Admin, security, auditor} {
		list = nil
		if code := env.call("GET", "/ssf/v1/stream", tok, nil, &list); code != 200 || len(list) != 1 || list[0].StreamID != id || list[0].Owner == "" {
			t.Errorf("privileged list: %d %+v", code, list)
		}
	}
	if code := env.call("DELETE", "/ssf/v1/stream?stream_id="+id, auditor, nil, nil); code != 403 {
		t.Errorf("auditor delete: %d", code)
	}
	if code := env.call("DELETE", "/ssf/v1/stream?stream_id="+id, security, nil, nil); code != 204 {
		t.Errorf("security delete: %d", code)
	}
}

// A receiver creates, reads, updates, verifies and deletes its own stream with nothing but
// its access token, as OpenID SSF 1.0 section 8 describes.
func TestReceiverManagesOwnStream(t *testing.T) {
	env := newTestEnv(t)
	backend := env.token("access")
	var conf map[string]any
	env.call("GET", "/.well-known/ssf-configuration", "", nil, &conf)
	for _, k := range []string{"configuration_endpoint", "status_endpoint", "add_subject_endpoint", "remove_subject_endpoint", "verification_endpoint"} {
		if u, _ := conf[k].(string); !strings.HasPrefix(u, "https://") {
			t.Errorf("%s = %v", k, conf[k])
		}
	}

	s := env.stream(backend, `{"events_requested":["`+posture.EventSessionRevoked+`","urn:example:unknown"],"description":"chat"}`)
	if s.Delivery.Method != events.MethodPoll || !strings.HasSuffix(s.Delivery.EndpointURL, "/ssf/v1/streams/"+s.StreamID+"/poll") ||
		s.Issuer != conf["issuer"] || s.Audience == "" || !slices.Equal(s.EventsDelivered, []string{posture.EventSessionRevoked}) ||
		len(s.EventsSupported) != 2 || len(s.EventsRequested) != 2 {
		t.Fatalf("created %+v", s)
	}
	var got events.Stream
	if code := env.call("GET", "/ssf/v1/stream?stream_id="+s.StreamID, backend, nil, &got); code != 200 || got.StreamID != s.StreamID {
		t.Fatalf("read: %d %+v", code, got)
	}
	if code := env.call("PATCH", "/ssf/v1/stream", backend, []byte(`{"stream_id":"`+s.StreamID+`","events_requested":["`+posture.EventComplianceChange+`"]}`), &got); code != 200 ||
		!slices.Equal(got.EventsDelivered, []string{posture.EventComplianceChange}) || got.Description != "chat" {
		t.Fatalf("patch: %d %+v", code, got)
	}
	got = events.Stream{}
	if code := env.call("PUT", "/ssf/v1/stream", backend, []byte(`{"stream_id":"`+s.StreamID+`","delivery":{"method":"urn:ietf:rfc:8936"}}`), &got); code != 200 ||
		len(got.EventsDelivered) != 2 || got.Description != "" {
		t.Fatalf("put: %d %+v", code, got)
	}
	var st events.StreamStatus
	if code := env.call("POST", "/ssf/v1/status", backend, []byte(`{"stream_id":"`+s.StreamID+`","status":"paused"}`), &st); code != 200 || st.Status != "paused" {
		t.Fatalf("pause: %d %+v", code, st)
	}
	if code := env.call("POST", "/ssf/v1/status", backend, []byte(`{"stream_id":"`+s.StreamID+`","status":"enabled"}`), &st); code != 200 || st.Status != "enabled" {
		t.Fatalf("enable: %d %+v", code, st)
	}
	if code := env.call("POST", "/ssf/v1/subjects/add", backend, []byte(`{"stream_id":"`+s.StreamID+`","subject":{"format":"opaque","id":"d_0001"}}`), nil); code != 200 {
		t.Fatalf("add subject: %d", code)
	}
	if code := env.call("POST", "/ssf/v1/subjects/remove", backend, []byte(`{"stream_id":"`+s.StreamID+`","subject":{"format":"opaque","id":"d_0001"}}`), nil); code != 204 {
		t.Fatalf("remove subject: %d", code)
	}

	const state = "b3BhcXVlIHN0YXRl"
	if code := env.call("POST", "/ssf/v1/verify", backend, []byte(`{"stream_id":"`+s.StreamID+`","state":"`+state+`"}`), nil); code != 204 {
		t.Fatalf("verify: %d", code)
	}
	code, sets := env.pollSETs(backend, s.StreamID, `{"returnImmediately":true}`)
	if code != 200 || len(sets) != 1 {
		t.Fatalf("poll after verify: %d %v", code, sets)
	}
	rx, verified := env.receiverFor(s.Audience)
	for _, set := range sets {
		if err := rx.Deliver(t.Context(), set); err != nil {
			t.Fatalf("verification SET does not verify: %v", err)
		}
	}
	if len(*verified) != 1 || (*verified)[0].typ != posture.EventVerification || (*verified)[0].claims.SubID.ID != s.StreamID {
		t.Fatalf("verified %+v", *verified)
	}
	var ev posture.VerificationEvent
	if err := json.Unmarshal((*verified)[0].claims.Events[posture.EventVerification], &ev); err != nil || ev.State != state {
		t.Errorf("verification state = %q, want %q (%v)", ev.State, state, err)
	}

	if code := env.call("DELETE", "/ssf/v1/stream?stream_id="+s.StreamID, backend, nil, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := env.call("GET", "/ssf/v1/stream?stream_id="+s.StreamID, backend, nil, nil); code != 404 {
		t.Errorf("read after delete: %d", code)
	}
}

// tlsReceiver is an HTTPS push receiver on loopback with a certificate for localhost from a
// test CA, written to caFile for ssf_ca_file.
type tlsReceiver struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	bodies []string
}

func newTLSReceiver(t *testing.T) *tlsReceiver {
	ca := testpki.NewCA(t, "receiver CA")
	cert, key := ca.Issue(t, "localhost", testpki.ServerFor("localhost", "127.0.0.1"))
	r := &tlsReceiver{caFile: filepath.Join(t.TempDir(), "receiver-ca.pem")}
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *tlsReceiver) got() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func (r *tlsReceiver) port() string { return r.srv.URL[strings.LastIndexByte(r.srv.URL, ':')+1:] }

// Push destinations inside the network are refused: given as an address when the stream is
// created, given as a name (localhost) when delivery connects. The stream shows the class of
// the failure only. With the destination on ssf_allowed_destinations, the same stream works.
func TestStreamDestinations(t *testing.T) {
	recv := newTLSReceiver(t)
	env := newTestEnv(t, func(c *mdmserver.Config) { c.SSFCAFile = recv.caFile })
	backend := env.token("access")
	for _, u := range []string{"https://127.0.0.1:" + recv.port() + "/ssf", "https://169.254.169.254/latest/meta-data/",
		"https://10.0.0.1:8443/ssf", "https://[::1]:" + recv.port() + "/ssf", "https://192.168.10.10/ssf"} {
		body := `{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"` + u + `"}}`
		if code := env.call("POST", "/ssf/v1/stream", backend, []byte(body), nil); code != 400 {
			t.Errorf("push to %s: %d, want 400", u, code)
		}
	}
	byName := `{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://localhost:` + recv.port() + `/ssf","authorization_header":"Bearer backend-secret"}}`
	s := env.stream(backend, byName)
	if code := env.call("POST", "/ssf/v1/verify", backend, []byte(`{"stream_id":"`+s.StreamID+`"}`), nil); code != 204 {
		t.Fatalf("verify: %d", code)
	}
	var st events.Stream
	for deadline := time.Now().Add(10 * time.Second); st.LastError == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		env.call("GET", "/ssf/v1/stream?stream_id="+s.StreamID, backend, nil, &st)
	}
	if st.LastError != "destination not allowed" || st.Pending != 1 || recv.got() != 0 {
		t.Fatalf("push to localhost: last_error %q, pending %d, receiver called %d times", st.LastError, st.Pending, recv.got())
	}
	resp, err := env.Client.Get(env.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hale_ssf_outbox_events{stream="` + s.StreamID + `"} 1`, `hale_ssf_deliveries_total{method="push",result="destination_denied"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	allowed := newTestEnv(t, func(c *mdmserver.Config) {
		c.SSFCAFile, c.SSFAllowedDestinations = recv.caFile, []string{"localhost:" + recv.port()}
	})
	backend = allowed.token("access")
	s = allowed.stream(backend, byName)
	if code := allowed.call("POST", "/ssf/v1/verify", backend, []byte(`{"stream_id":"`+s.StreamID+`"}`), nil); code != 204 {
		t.Fatalf("verify: %d", code)
	}
	for deadline := time.Now().Add(10 * time.Second); recv.got() == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	if recv.got() != 1 {
		t.Fatalf("the allow-listed receiver got %d pushes", recv.got())
	}
}
