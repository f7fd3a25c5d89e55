package posture_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// deniedWithRemedy is the middleware's 403 with the members a messaging app shows as is.
type deniedWithRemedy struct {
	Reasons     []posture.Reason   `json:"reasons"`
	GraceUntil  time.Time          `json:"grace_until"`
	Remediation []remediation.Item `json:"remediation"`
}

func serveGate(t *testing.T, g *posture.Gate, peer *x509.Certificate, hdr ...string) (*httptest.ResponseRecorder, posture.Access) {
	t.Helper()
	var reached posture.Access
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached, _ = posture.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	r := httptest.NewRequest(http.MethodPost, "/sessions", nil)
	if peer != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	posture.Middleware(g)(next).ServeHTTP(w, r)
	return w, reached
}

func TestMiddlewareDenialCarriesRemediation(t *testing.T) {
	f := newGateFixture(t)
	g := &posture.Gate{Verifier: f.verifier, Client: f.client, HelpDesk: remediation.HelpDesk{Name: "Mesa de ayuda", Phone: "+34 900 000 000"}}
	grace := t0.Add(-time.Second).Truncate(time.Second)
	tok := f.token(t, "d1", func(c *posture.TokenClaims) {
		c.Device = posture.DeviceAt{InGrace: true, GraceUntil: grace.Unix(), Reasons: []string{"os_too_old"}, Platform: "android"}
	})
	for lang, title := range map[string]string{"es-ES,es;q=0.9": "Se acabó el plazo", "en-US": "The time to fix your device has run out", "": "The time"} {
		w, _ := serveGate(t, g, f.cert, posture.PostureTokenHeader, tok, "Accept-Language", lang)
		var p deniedWithRemedy
		if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &p) != nil {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if !p.GraceUntil.Equal(grace) || len(p.Remediation) != 1 || p.Remediation[0].Code != posture.ReasonGraceExpired ||
			!strings.HasPrefix(p.Remediation[0].Title, title) || p.Remediation[0].Platform != "android" || len(p.Remediation[0].Steps) == 0 {
			t.Fatalf("Accept-Language %q: %s", lang, w.Body)
		}
	}
	// A reason the user cannot fix names the Gate's help desk.
	f.hale.set(deny("d3", posture.ReasonWiped))
	trusting := &posture.Gate{Client: f.client, TrustDeviceID: true, HelpDesk: g.HelpDesk}
	w, _ := serveGate(t, trusting, nil, posture.DeviceIDHeader, "d3", "Accept-Language", "es")
	var p deniedWithRemedy
	if json.Unmarshal(w.Body.Bytes(), &p) != nil || len(p.Remediation) != 1 || p.Remediation[0].UserFixable ||
		p.Remediation[0].Contact != "Mesa de ayuda (+34 900 000 000)" || p.Remediation[0].Lang != "es" {
		t.Fatalf("%s", w.Body)
	}
}

func TestGateBreakGlassToken(t *testing.T) {
	f := newGateFixture(t)
	g := &posture.Gate{Verifier: f.verifier}
	until := t0.Add(time.Hour)
	bg := func(exp time.Time) string {
		return f.token(t, "d1", func(c *posture.TokenClaims) {
			c.Device = posture.DeviceAt{Reasons: []string{"os_too_old"}, Platform: "ios",
				BreakGlass: &posture.BreakGlassAt{ID: "bg1", ExpiresAt: exp.Unix()}}
		})
	}
	w, a := serveGate(t, g, f.cert, posture.PostureTokenHeader, bg(until))
	if w.Code != http.StatusNoContent || a.Decision.BreakGlass == nil || a.Decision.BreakGlass.ID != "bg1" ||
		!a.Decision.BreakGlass.ExpiresAt.Equal(until) || strings.Join(a.Decision.BreakGlass.Overrides, ",") != "os_too_old" ||
		len(a.Decision.Remediation) != 1 || a.Decision.Remediation[0].Code != "os_too_old" {
		t.Fatalf("%d %s %+v", w.Code, w.Body, a.Decision)
	}
	// A use that ended lets nothing through, even with a token that has not expired.
	if w, _ := serveGate(t, g, f.cert, posture.PostureTokenHeader, bg(t0.Add(-time.Second))); w.Code != http.StatusForbidden {
		t.Fatalf("an ended break-glass use was let through: %d", w.Code)
	}
	// Without the break-glass claim the same verdict is a deny.
	noBG := f.token(t, "d1", func(c *posture.TokenClaims) { c.Device = posture.DeviceAt{Reasons: []string{"os_too_old"}} })
	if w, _ := serveGate(t, g, f.cert, posture.PostureTokenHeader, noBG); w.Code != http.StatusForbidden {
		t.Fatalf("a noncompliant token was let through: %d", w.Code)
	}
}

func TestReceiverNoticesDoNotRevoke(t *testing.T) {
	f := newGateFixture(t)
	r := posture.NewReceiver(posture.StaticJWKS(jwks(t, f.key)), "aud", issuer, posture.WithVerifier(f.verifier))
	tok := f.token(t, "d1")
	for _, code := range []string{posture.EventReasonGraceStarted, posture.EventReasonGraceEnding, posture.EventReasonBreakGlassStarted} {
		set := f.key.sign(t, posture.SETType, posture.SETClaims{Issuer: issuer, Audience: "aud", IssuedAt: t0.Unix(), ID: "n-" + code,
			SubID:  posture.SubjectID{Format: "opaque", ID: "d1"},
			Events: map[string]json.RawMessage{posture.EventComplianceChange: mustJSON(t, posture.CAEPEvent{EventTimestamp: t0.Unix(), PreviousStatus: "not-compliant", CurrentStatus: "not-compliant", ReasonCode: code})}})
		if err := r.Deliver(context.Background(), set); err != nil {
			t.Fatal(err)
		}
		if _, err := f.verifier.Verify(context.Background(), tok, f.cert); err != nil {
			t.Fatalf("notice %s revoked the device's tokens: %v", code, err)
		}
	}
	set := f.key.sign(t, posture.SETType, posture.SETClaims{Issuer: issuer, Audience: "aud", IssuedAt: t0.Unix(), ID: "end",
		SubID:  posture.SubjectID{Format: "opaque", ID: "d1"},
		Events: map[string]json.RawMessage{posture.EventSessionRevoked: mustJSON(t, posture.CAEPEvent{EventTimestamp: t0.Unix(), ReasonCode: posture.EventReasonBreakGlassEnded})}})
	if err := r.Deliver(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier.Verify(context.Background(), tok, f.cert); err == nil {
		t.Fatal("break_glass_ended did not revoke the tokens issued under it")
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
