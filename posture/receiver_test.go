package posture_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
)

func setClaims(jti, device, eventType string, ev posture.CAEPEvent) posture.SETClaims {
	body, _ := json.Marshal(ev)
	return posture.SETClaims{
		Issuer: issuer, Audience: audience, IssuedAt: t0.Unix(), ID: jti,
		SubID:  posture.SubjectID{Format: "opaque", ID: device},
		Events: map[string]json.RawMessage{eventType: body},
	}
}

type seenEvent struct {
	jti, typ string
	ev       posture.CAEPEvent
}

type receiverFixture struct {
	key      *signer
	hale     *fakeHale
	client   *posture.Client
	verifier *posture.Verifier
	recv     *posture.Receiver
	mu       sync.Mutex
	events   []seenEvent
}

func newReceiverFixture(t *testing.T, opts ...posture.ReceiverOption) *receiverFixture {
	f := &receiverFixture{key: newSigner(t, "k1")}
	keys := jwks(t, f.key)
	f.hale = newFakeHale(t, keys)
	f.hale.set(allow("d1"))
	c := newClock()
	f.client = newClient(t, f.hale, c)
	f.verifier = posture.NewVerifier(posture.StaticJWKS(keys), posture.WithVerifierClock(c.Now))
	opts = append([]posture.ReceiverOption{
		posture.WithClient(f.client), posture.WithVerifier(f.verifier),
		posture.WithOnEvent(func(_ context.Context, set posture.SETClaims, typ string, ev posture.CAEPEvent) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.events = append(f.events, seenEvent{set.ID, typ, ev})
		}),
	}, opts...)
	f.recv = posture.NewReceiver(posture.StaticJWKS(keys), audience, issuer, opts...)
	return f
}

func (f *receiverFixture) push(t *testing.T, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/ssf/events", strings.NewReader(body))
	r.Header.Set("Content-Type", posture.SETContentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.recv.ServeHTTP(w, r)
	return w
}

func (f *receiverFixture) seen() []seenEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenEvent(nil), f.events...)
}

// wantSETError checks an RFC 8935 error answer.
func wantSETError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	var e posture.SETErr
	if w.Code != status || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Err != code || e.Description == "" {
		t.Fatalf("got %d %s; want %d with err %q", w.Code, w.Body, status, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestReceiverSessionRevoked(t *testing.T) {
	f := newReceiverFixture(t)
	ctx := context.Background()
	devCert := deviceCert(t, "d1")
	token := f.key.token(t, claims("d1", devCert, t0.Add(-time.Minute)))
	if _, err := f.verifier.Verify(ctx, token, devCert); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Device(ctx, "d1"); err != nil {
		t.Fatal(err)
	}

	ev := posture.CAEPEvent{EventTimestamp: t0.Unix(), InitiatingEntity: "admin", ReasonCode: posture.ReasonLocked}
	set := f.key.sign(t, posture.SETType, setClaims("jti-1", "d1", posture.EventSessionRevoked, ev))
	if w := f.push(t, set); w.Code != http.StatusAccepted {
		t.Fatalf("valid SET: %d %s", w.Code, w.Body)
	}
	if got := f.seen(); len(got) != 1 || got[0].typ != posture.EventSessionRevoked || got[0].ev.ReasonCode != posture.ReasonLocked || got[0].jti != "jti-1" {
		t.Fatalf("OnEvent saw %+v", got)
	}
	if _, err := f.verifier.Verify(ctx, token, devCert); !errors.Is(err, posture.ErrRevoked) {
		t.Fatalf("token from before the event: %v", err)
	}
	if _, err := f.client.Device(ctx, "d1"); err != nil || f.hale.hits.Load() != 2 {
		t.Fatalf("the cached decision survived the event (%d requests, %v)", f.hale.hits.Load(), err)
	}

	// Delivered again (a transmitter retry): acknowledged, not applied twice.
	if w := f.push(t, set); w.Code != http.StatusAccepted {
		t.Fatalf("duplicate: %d %s", w.Code, w.Body)
	}
	if got := f.seen(); len(got) != 1 {
		t.Fatalf("duplicate SET applied again: %+v", got)
	}
}

func TestReceiverComplianceChange(t *testing.T) {
	f := newReceiverFixture(t)
	ctx := context.Background()
	devCert := deviceCert(t, "d1")
	token := f.key.token(t, claims("d1", devCert, t0.Add(-time.Minute)))

	toCompliant := posture.CAEPEvent{EventTimestamp: t0.Unix(), PreviousStatus: "not-compliant", CurrentStatus: "compliant"}
	if w := f.push(t, f.key.sign(t, posture.SETType, setClaims("c1", "d1", posture.EventComplianceChange, toCompliant))); w.Code != http.StatusAccepted {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if _, err := f.verifier.Verify(ctx, token, devCert); err != nil {
		t.Fatalf("becoming compliant revoked the token: %v", err)
	}
	toNot := posture.CAEPEvent{EventTimestamp: t0.Unix(), PreviousStatus: "compliant", CurrentStatus: "not-compliant", ReasonCode: "passcode_missing"}
	if w := f.push(t, f.key.sign(t, posture.SETType, setClaims("c2", "d1", posture.EventComplianceChange, toNot))); w.Code != http.StatusAccepted {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if _, err := f.verifier.Verify(ctx, token, devCert); !errors.Is(err, posture.ErrRevoked) {
		t.Fatalf("becoming noncompliant did not revoke the token: %v", err)
	}
	if got := f.seen(); len(got) != 2 || got[1].ev.CurrentStatus != "not-compliant" {
		t.Fatalf("OnEvent saw %+v", got)
	}
}

func TestReceiverRefuses(t *testing.T) {
	ev := posture.CAEPEvent{EventTimestamp: t0.Unix()}
	good := func(f *receiverFixture, t *testing.T) posture.SETClaims {
		return setClaims("j", "d1", posture.EventSessionRevoked, ev)
	}
	cases := []struct {
		name   string
		body   func(f *receiverFixture, t *testing.T) string
		status int
		code   string
	}{
		{"bad signature", func(f *receiverFixture, t *testing.T) string {
			return newSigner(t, "k1").sign(t, posture.SETType, good(f, t))
		}, 400, "invalid_key"},
		{"unknown key", func(f *receiverFixture, t *testing.T) string {
			return newSigner(t, "k7").sign(t, posture.SETType, good(f, t))
		}, 400, "invalid_key"},
		{"wrong audience", func(f *receiverFixture, t *testing.T) string {
			c := good(f, t)
			c.Audience = "https://other-backend.test"
			return f.key.sign(t, posture.SETType, c)
		}, 400, "invalid_audience"},
		{"wrong issuer", func(f *receiverFixture, t *testing.T) string {
			c := good(f, t)
			c.Issuer = "https://evil.test"
			return f.key.sign(t, posture.SETType, c)
		}, 400, "invalid_issuer"},
		{"posture token instead of a SET", func(f *receiverFixture, t *testing.T) string {
			return f.key.sign(t, posture.TokenType, good(f, t))
		}, 400, "invalid_request"},
		{"no jti", func(f *receiverFixture, t *testing.T) string {
			c := good(f, t)
			c.ID = ""
			return f.key.sign(t, posture.SETType, c)
		}, 400, "invalid_request"},
		{"malformed event", func(f *receiverFixture, t *testing.T) string {
			c := good(f, t)
			c.Events[posture.EventSessionRevoked] = json.RawMessage(`"not an object"`)
			return f.key.sign(t, posture.SETType, c)
		}, 400, "invalid_request"},
		{"garbage", func(*receiverFixture, *testing.T) string { return "garbage" }, 400, "invalid_request"},
		{"oversized", func(*receiverFixture, *testing.T) string { return strings.Repeat("a", 64<<10+1) }, 413, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newReceiverFixture(t)
			if _, err := f.client.Device(context.Background(), "d1"); err != nil {
				t.Fatal(err)
			}
			wantSETError(t, f.push(t, tc.body(f, t)), tc.status, tc.code)
			if len(f.seen()) != 0 {
				t.Fatal("OnEvent called for a refused SET")
			}
			if _, err := f.client.Device(context.Background(), "d1"); err != nil || f.hale.hits.Load() != 1 {
				t.Fatal("a refused SET invalidated the cache")
			}
		})
	}

	t.Run("wrong content type", func(t *testing.T) {
		f := newReceiverFixture(t)
		w := f.push(t, f.key.sign(t, posture.SETType, good(f, t)), "Content-Type", "application/json")
		if w.Code != http.StatusUnsupportedMediaType {
			t.Fatalf("%d", w.Code)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		f := newReceiverFixture(t)
		w := httptest.NewRecorder()
		f.recv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ssf/events", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
			t.Fatalf("%d %v", w.Code, w.Header())
		}
	})
	t.Run("authorization", func(t *testing.T) {
		f := newReceiverFixture(t, posture.WithAuthorization("Bearer push-secret"))
		set := f.key.sign(t, posture.SETType, good(f, t))
		wantSETError(t, f.push(t, set), 400, "authentication_failed")
		wantSETError(t, f.push(t, set, "Authorization", "Bearer wrong"), 400, "authentication_failed")
		if w := f.push(t, set, "Authorization", "Bearer push-secret"); w.Code != http.StatusAccepted {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("keys unavailable", func(t *testing.T) {
		f := newReceiverFixture(t)
		h := newFakeHale(t, nil)
		h.setMode("jwks-500")
		r := posture.NewReceiver(newClient(t, h, newClock()).Keys(), audience, issuer)
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(f.key.sign(t, posture.SETType, good(f, t))))
		req.Header.Set("Content-Type", posture.SETContentType+"; charset=utf-8")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
}
