package events_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/posture"
)

const testIssuer = "https://hale.example"

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testSigner signs like mdmserver/signing.Keyset: ES256 compact JWS with the given typ.
type testSigner struct{ key *ecdsa.PrivateKey }

func newTestSigner(t testing.TB) *testSigner {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{key: k}
}

func (s *testSigner) Sign(typ string, claims any) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// verify checks a SET's signature and typ and returns its claims.
func (s *testSigner) verify(t testing.TB, set string) posture.SETClaims {
	t.Helper()
	obj, err := jose.ParseSignedCompact(set, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse SET: %v", err)
	}
	if typ := obj.Signatures[0].Header.ExtraHeaders[jose.HeaderType]; typ != posture.SETType {
		t.Fatalf("typ header = %v, want %s", typ, posture.SETType)
	}
	payload, err := obj.Verify(&s.key.PublicKey)
	if err != nil {
		t.Fatalf("SET signature does not verify: %v", err)
	}
	var c posture.SETClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("SET claims: %v", err)
	}
	return c
}

func testKey(t testing.TB) *seal.Key {
	k, err := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openDB(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	db, err := boltstore.Open(path, boltstore.WithOpenTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// streams narrows st to the transmitter's repository, as the server does.
func streams(st storage.Store) events.Store {
	return storage.Scope(st, func(tx storage.Tx) events.Tx { return tx })
}

type fixture struct {
	tr     *events.Transmitter
	db     *boltstore.Store
	path   string
	signer *testSigner
}

// rx is the receiver the tests act as, unless a request names another in callerHeader.
var rx = events.Caller{ID: "tok_receiver"}

// callerHeader names the credential a test request comes from; readAllHeader lets it read and
// delete every stream (as admin and security may).
const (
	callerHeader  = "X-Test-Caller"
	readAllHeader = "X-Test-Read-All"
)

func testCaller(r *http.Request) events.Caller {
	id := r.Header.Get(callerHeader)
	if id == "" {
		return rx
	}
	all := r.Header.Get(readAllHeader) != ""
	return events.Caller{ID: id, ReadAll: all, DeleteAll: all}
}

// loopback is the allow-list the push tests need: their receivers are httptest servers on
// 127.0.0.1, which delivery refuses unless the operator names it.
func loopback(t testing.TB) *events.AllowList {
	a, err := events.ParseAllowList([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func defaultOpts(t testing.TB) []events.Option {
	return []events.Option{
		events.WithLogger(slog.New(slog.DiscardHandler)),
		events.WithClock(func() time.Time { return testNow }),
		events.WithBackoff(time.Millisecond, 5*time.Millisecond),
		events.WithPollWait(50 * time.Millisecond),
		events.WithCaller(testCaller),
		events.WithAllowList(loopback(t)),
		events.WithMinVerificationInterval(0),
	}
}

func newFixture(t testing.TB, opts ...events.Option) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hale.db")
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, path: path, signer: newTestSigner(t)}
	tr, err := events.New(streams(db), f.signer, testIssuer+"/", testKey(t), append(defaultOpts(t), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.tr = tr
	return f
}

// run starts tr.Run until the test ends.
func run(t testing.TB, tr *events.Transmitter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tr.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitFor polls cond until it holds, failing the test after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// receiver is a push endpoint that records what it got and answers with respond.
type receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	reqs    []received
	respond func(n int, w http.ResponseWriter, r *http.Request) // n counts from 0
}

type received struct {
	header http.Header
	body   string
}

func newReceiver(t testing.TB, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, received{header: r.Header.Clone(), body: string(b)})
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(n, w, r)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// pushStream creates a push stream of rx's to url.
func (f *fixture) pushStream(t testing.TB, url string, mod ...func(*events.Config)) events.Stream {
	t.Helper()
	c := events.Config{Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: url}, Audience: "https://chat.example"}
	for _, m := range mod {
		m(&c)
	}
	s, err := f.tr.CreateStream(context.Background(), rx, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pollStream creates a poll stream of rx's.
func (f *fixture) pollStream(t testing.TB) events.Stream {
	t.Helper()
	s, err := f.tr.CreateStream(context.Background(), rx, events.Config{Audience: "poller"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func complianceEvent(device string) events.Event {
	return events.Event{
		Type:           posture.EventComplianceChange,
		DeviceID:       device,
		ReasonCode:     "encryption_off",
		ReasonDetail:   "FileVault is off",
		PreviousStatus: "compliant",
		CurrentStatus:  "not-compliant",
		Initiator:      "policy",
		TXN:            "chg_1",
		At:             testNow.Add(-time.Minute),
	}
}

func revokedEvent(device string) events.Event {
	return events.Event{Type: posture.EventSessionRevoked, DeviceID: device, ReasonCode: posture.ReasonWiped, Initiator: "admin", TXN: "c_1"}
}

func emit(t testing.TB, tr *events.Transmitter, evs ...events.Event) {
	t.Helper()
	if err := tr.Emit(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
}

// poll posts body to the poll handler for stream id, as rx or, with as, another credential.
func poll(t testing.TB, tr *events.Transmitter, id, body string, as ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/ssf/v1/streams/"+id+"/poll", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if len(as) > 0 {
		req.Header.Set(callerHeader, as[0])
	}
	req.SetPathValue("id", id)
	rec := httptest.NewRecorder()
	tr.PollHandler().ServeHTTP(rec, req)
	return rec
}

func decodePoll(t testing.TB, rec *httptest.ResponseRecorder) posture.PollResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	var pr posture.PollResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &pr); err != nil {
		t.Fatalf("poll response: %v: %s", err, rec.Body)
	}
	return pr
}

// api routes the stream API as the server does, without its token check: testCaller stands in.
func (f *fixture) api() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /ssf/v1/stream", f.tr.CreateStreamHandler())
	mux.Handle("GET /ssf/v1/stream", f.tr.GetStreamHandler())
	mux.Handle("PATCH /ssf/v1/stream", f.tr.UpdateStreamHandler(false))
	mux.Handle("PUT /ssf/v1/stream", f.tr.UpdateStreamHandler(true))
	mux.Handle("DELETE /ssf/v1/stream", f.tr.DeleteStreamHandler())
	mux.Handle("GET /ssf/v1/status", f.tr.GetStatusHandler())
	mux.Handle("POST /ssf/v1/status", f.tr.SetStatusHandler())
	mux.Handle("POST /ssf/v1/subjects/add", f.tr.SubjectHandler(false))
	mux.Handle("POST /ssf/v1/subjects/remove", f.tr.SubjectHandler(true))
	mux.Handle("POST /ssf/v1/verify", f.tr.VerifyHandler())
	mux.Handle("POST /ssf/v1/streams/{id}/poll", f.tr.PollHandler())
	return mux
}

// do sends one stream API request as rx or, with as, as another credential ("*" after its
// name: one that may read and delete every stream).
func (f *fixture) do(t testing.TB, method, target, body string, as ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(as) > 0 {
		name, all := strings.CutSuffix(as[0], "*")
		req.Header.Set(callerHeader, name)
		if all {
			req.Header.Set(readAllHeader, "yes")
		}
	}
	rec := httptest.NewRecorder()
	f.api().ServeHTTP(rec, req)
	return rec
}

// decodeStream reads a stream from a 200 or 201 answer.
func decodeStream(t testing.TB, rec *httptest.ResponseRecorder, want int) events.Stream {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("answered %d, want %d: %s", rec.Code, want, rec.Body)
	}
	var s events.Stream
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatalf("stream: %v: %s", err, rec.Body)
	}
	return s
}
