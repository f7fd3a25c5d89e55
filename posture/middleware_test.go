package posture_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/posture"
)

type gateFixture struct {
	key      *signer
	hale     *fakeHale
	client   *posture.Client
	verifier *posture.Verifier
	cert     *x509.Certificate // d1's certificate
	clock    *testclock.Clock
}

func newGateFixture(t *testing.T) *gateFixture {
	f := &gateFixture{key: newSigner(t, "k1"), clock: newClock(), cert: deviceCert(t, "d1")}
	keys := jwks(t, f.key)
	f.hale = newFakeHale(t, keys)
	f.hale.set(allow("d1"))
	f.hale.set(deny("d2", "encryption_off"))
	f.hale.setCert(f.cert, "d1")
	f.client = newClient(t, f.hale, f.clock)
	f.verifier = posture.NewVerifier(posture.StaticJWKS(keys), posture.WithVerifierClock(f.clock.Now))
	return f
}

func (f *gateFixture) token(t *testing.T, device string, mod ...func(*posture.TokenClaims)) string {
	c := claims(device, f.cert, t0.Add(-time.Minute))
	for _, m := range mod {
		m(&c)
	}
	return f.key.token(t, c)
}

// problemBody is the middleware's 403.
type problemBody struct {
	Type    string           `json:"type"`
	Title   string           `json:"title"`
	Status  int              `json:"status"`
	Detail  string           `json:"detail"`
	Reasons []posture.Reason `json:"reasons"`
}

func TestMiddleware(t *testing.T) {
	f := newGateFixture(t)
	var reached posture.Access
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := posture.FromContext(r.Context())
		if !ok {
			t.Error("no Access in the context")
		}
		reached = a
		w.WriteHeader(http.StatusNoContent)
	})
	serve := func(g *posture.Gate, peer *x509.Certificate, hdr ...string) *httptest.ResponseRecorder {
		t.Helper()
		reached = posture.Access{}
		r := httptest.NewRequest(http.MethodPost, "/sessions", nil)
		if peer != nil {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		posture.Middleware(g)(next).ServeHTTP(w, r)
		return w
	}
	wantDenied := func(w *httptest.ResponseRecorder, code string) problemBody {
		t.Helper()
		var p problemBody
		if w.Code != http.StatusForbidden || w.Header().Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(w.Body.Bytes(), &p) != nil {
			t.Fatalf("got %d %q %s; want a 403 problem", w.Code, w.Header().Get("Content-Type"), w.Body)
		}
		if p.Type != posture.SessionDeniedType || p.Title != "Session denied" || p.Status != 403 || p.Detail == "" ||
			len(p.Reasons) == 0 || p.Reasons[0].Code != code {
			t.Fatalf("problem %+v; want reason %s", p, code)
		}
		if reached.DeviceID != "" {
			t.Fatal("a denied request reached the handler")
		}
		return p
	}
	both := &posture.Gate{Verifier: f.verifier, Client: f.client}

	t.Run("token in Authorization", func(t *testing.T) {
		w := serve(both, f.cert, "Authorization", "Posture "+f.token(t, "d1"))
		if w.Code != http.StatusNoContent || reached.DeviceID != "d1" || reached.Claims == nil || reached.Live || !reached.Decision.Allow {
			t.Fatalf("%d %s, access %+v", w.Code, w.Body, reached)
		}
		if f.hale.hits.Load() != 0 {
			t.Fatal("a token was checked with the server although no live decision was required")
		}
	})
	t.Run("token in X-Posture-Token", func(t *testing.T) {
		w := serve(both, f.cert, "Authorization", "Bearer user-session", posture.PostureTokenHeader, f.token(t, "d1"))
		if w.Code != http.StatusNoContent || reached.DeviceID != "d1" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("token bound to another certificate", func(t *testing.T) {
		wantDenied(serve(both, deviceCert(t, "thief"), posture.PostureTokenHeader, f.token(t, "d1")), posture.ReasonInvalidToken)
	})
	t.Run("token without a client certificate", func(t *testing.T) {
		wantDenied(serve(both, nil, posture.PostureTokenHeader, f.token(t, "d1")), posture.ReasonUnknownCert)
	})
	t.Run("token past its grace period", func(t *testing.T) {
		tok := f.token(t, "d1", func(c *posture.TokenClaims) {
			c.Device = posture.DeviceAt{InGrace: true, GraceUntil: t0.Add(-time.Second).Unix(), Reasons: []string{"os_too_old"}}
		})
		wantDenied(serve(both, f.cert, posture.PostureTokenHeader, tok), posture.ReasonGraceExpired)
	})
	t.Run("token in grace", func(t *testing.T) {
		tok := f.token(t, "d1", func(c *posture.TokenClaims) {
			c.Device = posture.DeviceAt{InGrace: true, GraceUntil: t0.Add(time.Hour).Unix(), Reasons: []string{"os_too_old"}}
		})
		if w := serve(both, f.cert, posture.PostureTokenHeader, tok); w.Code != http.StatusNoContent ||
			reasonCodes(reached.Decision) != "os_too_old" || !reached.Decision.InGrace {
			t.Fatalf("%d %s %+v", w.Code, w.Body, reached.Decision)
		}
	})
	t.Run("live decision required", func(t *testing.T) {
		live := &posture.Gate{Verifier: f.verifier, Client: f.client, RequireLiveDecision: true}
		if w := serve(live, f.cert, posture.PostureTokenHeader, f.token(t, "d1")); w.Code != http.StatusNoContent || !reached.Live || reached.Claims == nil {
			t.Fatalf("%d %s %+v", w.Code, w.Body, reached)
		}
		// d2's token is valid but the server denies d2 now.
		p := wantDenied(serve(live, f.cert, posture.PostureTokenHeader, f.token(t, "d2")), "encryption_off")
		if p.Detail != "encryption_off detail" {
			t.Fatalf("detail %q", p.Detail)
		}
	})
	t.Run("certificate only", func(t *testing.T) {
		if w := serve(both, f.cert); w.Code != http.StatusNoContent || reached.DeviceID != "d1" || !reached.Live {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		wantDenied(serve(both, deviceCert(t, "stranger")), posture.ReasonUnknownCert)
	})
	t.Run("device ID header", func(t *testing.T) {
		wantDenied(serve(both, nil, posture.DeviceIDHeader, "d1"), posture.ReasonNoDeviceIdentity)
		trusting := &posture.Gate{Client: f.client, TrustDeviceID: true}
		if w := serve(trusting, nil, posture.DeviceIDHeader, "d1"); w.Code != http.StatusNoContent || reached.DeviceID != "d1" {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		wantDenied(serve(trusting, nil, posture.DeviceIDHeader, "d2"), "encryption_off")
	})
	t.Run("zero Gate denies", func(t *testing.T) {
		wantDenied(serve(&posture.Gate{}, f.cert, posture.PostureTokenHeader, f.token(t, "d1"), posture.DeviceIDHeader, "d1"),
			posture.ReasonNoDeviceIdentity)
	})
	t.Run("server unreachable", func(t *testing.T) {
		f.hale.setMode("503")
		defer f.hale.setMode("")
		f.client.Invalidate("d1")
		p := wantDenied(serve(both, f.cert), posture.ReasonUnreachable)
		if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(p.Detail, "503") {
			t.Fatalf("internal detail leaked to the client: %q", p.Detail)
		}
	})
}

func TestAuthorizeDeniedError(t *testing.T) {
	f := newGateFixture(t)
	var log strings.Builder
	g := &posture.Gate{Client: f.client, TrustDeviceID: true, Logger: slog.New(slog.NewTextHandler(&log, nil))}
	_, err := g.Authorize(context.Background(), posture.Presented{DeviceID: "d2"})
	de, ok := err.(*posture.DeniedError)
	if !ok || de.DeviceID != "d2" || de.Reasons[0].Code != "encryption_off" || posture.ReasonCode(err) != "encryption_off" ||
		!strings.Contains(err.Error(), "encryption_off") || !strings.Contains(err.Error(), "d2") {
		t.Fatalf("%#v", err)
	}
	if !strings.Contains(log.String(), "device=d2") || !strings.Contains(log.String(), "encryption_off") {
		t.Fatalf("denial not logged: %q", log.String())
	}
}
