package posture_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/posture"
)

// t0 is the fixed instant every fake clock starts at.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const (
	accessToken = "access-token-for-tests"
	issuer      = "https://hale.test"
	audience    = "https://backend.test/ssf/events"
)

func newClock() *testclock.Clock { return testclock.New(t0) }

// signer is a server signing key.
type signer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newSigner(t testing.TB, kid string) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, kid: kid}
}

func jwks(t testing.TB, signers ...*signer) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range signers {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes a compact ES256 JWS of claims with the given typ header ("" for none).
func (s *signer) sign(t testing.TB, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *signer) token(t testing.TB, c posture.TokenClaims) string {
	return s.sign(t, posture.TokenType, c)
}

// claims are the claims of a valid token for device, bound to cert, issued at iat for 10 minutes.
func claims(device string, cert *x509.Certificate, iat time.Time) posture.TokenClaims {
	return posture.TokenClaims{
		Issuer: issuer, Subject: device, Audience: posture.TokenAudience,
		IssuedAt: iat.Unix(), NotBefore: iat.Unix(), Expiry: iat.Add(10 * time.Minute).Unix(), ID: "jti-" + device,
		Confirm: posture.Confirm{X5tS256: posture.Thumbprint(cert)},
		Device:  posture.DeviceAt{Compliant: true, Platform: "ios", OSVersion: "19.1"},
	}
}

// deviceCert issues a device certificate.
func deviceCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	cert, _ := testpki.NewCA(t, "devices").Issue(t, name)
	return cert
}

// fakeHale is the access API of a Hale server.
type fakeHale struct {
	srv *httptest.Server

	mu        sync.Mutex
	decisions map[string]posture.Decision
	certs     map[string]string // hex SHA-256 of a certificate -> device ID
	keys      []byte
	mode      string // "", "500", "503", "garbage", "hang", "wrong-id", "jwks-500"

	// arrived and release, when set, hold each access request until the test lets it go.
	arrived, release chan struct{}

	hits     atomic.Int64 // device and check requests
	jwksHits atomic.Int64
}

func newFakeHale(t *testing.T, keys []byte) *fakeHale {
	t.Helper()
	h := &fakeHale{decisions: map[string]posture.Decision{}, certs: map[string]string{}, keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /access/v1/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !h.serveAccess(w, r) {
			return
		}
		h.mu.Lock()
		d := h.lookup(r.PathValue("id"))
		if h.mode == "wrong-id" {
			d.DeviceID = "someone-else"
		}
		h.mu.Unlock()
		_ = json.NewEncoder(w).Encode(d)
	})
	mux.HandleFunc("POST /access/v1/check", func(w http.ResponseWriter, r *http.Request) {
		if !h.serveAccess(w, r) {
			return
		}
		var req posture.CheckRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if req.Devices == nil {
			_ = json.NewEncoder(w).Encode(h.subject(req.Subject))
			return
		}
		var resp posture.CheckResponse
		for _, s := range req.Devices {
			resp.Decisions = append(resp.Decisions, h.subject(s))
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("GET /access/v1/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		h.jwksHits.Add(1)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.mode == "jwks-500" {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(h.keys)
	})
	h.srv = httptest.NewTLSServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// serveAccess authenticates and applies the failure mode; false when it answered already.
func (h *fakeHale) serveAccess(w http.ResponseWriter, r *http.Request) bool {
	h.hits.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+accessToken {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"type":"https://hale.dev/problems/unauthorized","title":"Unauthorized","status":401,"detail":"missing or invalid bearer token"}`))
		return false
	}
	h.mu.Lock()
	mode, arrived, release := h.mode, h.arrived, h.release
	h.mu.Unlock()
	if arrived != nil {
		arrived <- struct{}{}
		<-release
	}
	switch mode {
	case "500":
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"type":"https://hale.dev/problems/internal","title":"Internal Server Error","status":500,"detail":"boom"}`))
		return false
	case "503":
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return false
	case "garbage":
		_, _ = w.Write([]byte(`{"device_id": "d1", "allow": tru`))
		return false
	case "hang":
		<-r.Context().Done()
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	return true
}

func (h *fakeHale) lookup(id string) posture.Decision {
	if d, ok := h.decisions[id]; ok {
		return d
	}
	return posture.Decision{DeviceID: id, Reasons: []posture.Reason{{Code: posture.ReasonUnknownDevice, Detail: "no such device"}}}
}

func (h *fakeHale) subject(s posture.Subject) posture.Decision {
	switch {
	case s.DeviceID != "":
		return h.lookup(s.DeviceID)
	case s.CertificateSHA256 != "":
		if id, ok := h.certs[strings.ToLower(strings.ReplaceAll(s.CertificateSHA256, ":", ""))]; ok {
			return h.lookup(id)
		}
	}
	return posture.Decision{Reasons: []posture.Reason{{Code: posture.ReasonUnknownCert}}}
}

func (h *fakeHale) set(d posture.Decision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.decisions[d.DeviceID] = d
}

func (h *fakeHale) setCert(cert *x509.Certificate, device string) {
	sum := sha256.Sum256(cert.Raw)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.certs[hex.EncodeToString(sum[:])] = device
}

func (h *fakeHale) setMode(m string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mode = m
}

func (h *fakeHale) setKeys(keys []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = keys
}

func allow(id string) posture.Decision {
	return posture.Decision{DeviceID: id, Allow: true, Compliant: true, State: "active", EvaluatedAt: t0}
}

func deny(id, code string) posture.Decision {
	return posture.Decision{DeviceID: id, Reasons: []posture.Reason{{Code: code, Detail: code + " detail"}}, State: "active"}
}

// newClient is a Client for h trusting its test certificate, with the clock c.
func newClient(t *testing.T, h *fakeHale, c *testclock.Clock, opts ...posture.ClientOption) *posture.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(h.srv.Certificate())
	opts = append([]posture.ClientOption{posture.WithRootCAs(pool), posture.WithBearerToken(accessToken), posture.WithClock(c.Now)}, opts...)
	cl, err := posture.NewClient(h.srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func reasonCodes(d posture.Decision) string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Code)
	}
	return strings.Join(out, ",")
}
