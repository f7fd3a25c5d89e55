package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/rootpin"
	"github.com/halemdm/hale/policies"
)

// testCA is a root and an intermediate, as the real server has.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.rootKey = mustKey(t)
	ca.root = mustSign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Test Hale Root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &ca.rootKey.PublicKey, ca.rootKey, time.Hour)
	ca.interKey = mustKey(t)
	ca.inter = mustSign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Test Hale Intermediate"}, IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, ca.root, &ca.interKey.PublicKey, ca.rootKey, time.Hour)
	return ca
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serialMu sync.Mutex
var serialN int64 = 1

func mustSign(t testing.TB, tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey, life time.Duration) *x509.Certificate {
	t.Helper()
	serialMu.Lock()
	serialN++
	tmpl.SerialNumber = big.NewInt(serialN)
	serialMu.Unlock()
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Second), now.Add(life)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(certs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return b.String()
}

// issue signs a device certificate for a CSR, leaf then intermediate.
func (ca *testCA) issue(t testing.TB, csrPEM, deviceID string, life time.Duration) (string, error) {
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return "", fmt.Errorf("not a CSR")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return "", err
	}
	if err := csr.CheckSignature(); err != nil {
		return "", err
	}
	leaf := mustSign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: deviceID},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.inter, csr.PublicKey, ca.interKey, life)
	return pemOf(leaf, ca.inter), nil
}

// Failure modes of the fake server.
const (
	modeOK      = iota
	modeDown    // 503 problem on every agent call
	modeGarbage // 200 with a body that is not the contract
	modeSlow    // hangs past any client timeout
)

type receivedReport struct {
	device string
	serial string
	report Report
}

// fakeServer implements the agent wire contract over real TLS with mTLS client certificates.
type fakeServer struct {
	t   testing.TB
	ca  *testCA
	srv *httptest.Server

	mu           sync.Mutex
	mode         int
	tokens       map[string]bool // unused enrollment tokens
	devices      map[string]bool
	nonces       map[string]string // nonce -> device
	reports      []receivedReport
	nonceInvalid int
	commands     map[string][]Command // device -> undelivered-or-unacknowledged
	results      map[string]state.Result
	resultCalls  map[string]int
	ackResults   bool
	renewals     int
	certLife     time.Duration
	nextReportIn string
	forgetNonces bool
	nextID       int
	policy       *policies.AgentPolicy
	policyCalls  int
	notModified  int
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	f := &fakeServer{
		t: t, ca: newTestCA(t),
		tokens: map[string]bool{"tok-1": true, "tok-2": true, "tok-3": true}, devices: map[string]bool{},
		nonces: map[string]string{}, commands: map[string][]Command{}, results: map[string]state.Result{},
		resultCalls: map[string]int{}, ackResults: true, certLife: time.Hour, nextReportIn: "60s",
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ca/root.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write([]byte(pemOf(f.ca.root)))
	})
	mux.HandleFunc("POST /agent/v1/enroll", f.enroll)
	mux.HandleFunc("POST /agent/v1/renew", f.device(f.renew))
	mux.HandleFunc("GET /agent/v1/nonce", f.device(f.nonce))
	mux.HandleFunc("POST /agent/v1/report", f.device(f.report))
	mux.HandleFunc("GET /agent/v1/commands", f.device(f.pollCommands))
	mux.HandleFunc("GET /agent/v1/policy", f.device(f.getPolicy))
	mux.HandleFunc("POST /agent/v1/commands/{id}/result", f.device(f.result))

	f.srv = httptest.NewUnstartedServer(mux)
	serverKey := mustKey(t)
	serverCert := mustSign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "hale test server"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, f.ca.inter, &serverKey.PublicKey, f.ca.interKey, time.Hour)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(f.ca.root)
	f.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw, f.ca.inter.Raw}, PrivateKey: serverKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) URL() string { return f.srv.URL }

func (f *fakeServer) fingerprint() string { return rootpin.Fingerprint(f.ca.root) }

func (f *fakeServer) set(fn func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// failure answers according to the failure mode; it reports whether it answered.
func (f *fakeServer) failure(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	switch mode {
	case modeDown:
		problem.Error(w, r, http.StatusServiceUnavailable, "unavailable", "down for the test")
	case modeGarbage:
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":"yes","commands":{"x":1},"nonce":7` + strings.Repeat("A", 300<<10)))
	case modeSlow:
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	default:
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) enroll(w http.ResponseWriter, r *http.Request) {
	if f.failure(w, r) {
		return
	}
	var req api.AgentEnrollRequest
	if !problem.DecodeJSON(w, r, 64<<10, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.tokens[req.Token] {
		problem.Error(w, r, http.StatusUnauthorized, "enrollment-token-invalid", "unknown or used token")
		return
	}
	f.nextID++
	id := fmt.Sprintf("d_%016x", f.nextID)
	chain, err := f.ca.issue(f.t, req.CSR, id, f.certLife)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	delete(f.tokens, req.Token)
	f.devices[id] = true
	writeJSON(w, http.StatusCreated, enrollResponse{DeviceID: id, CertificateChain: chain, CACertificate: pemOf(f.ca.root), ReportInterval: "60s"})
}

// device wraps an mTLS endpoint: it requires a verified client certificate of a known device.
func (f *fakeServer) device(h func(w http.ResponseWriter, r *http.Request, id, serial string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			problem.Error(w, r, http.StatusUnauthorized, "certificate-required", "present the device certificate")
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		id := leaf.Subject.CommonName
		f.mu.Lock()
		known := f.devices[id]
		f.mu.Unlock()
		if !known {
			problem.Error(w, r, http.StatusForbidden, "device-unknown", "unknown or revoked device")
			return
		}
		if f.failure(w, r) {
			return
		}
		h(w, r, id, leaf.SerialNumber.String())
	}
}

func (f *fakeServer) renew(w http.ResponseWriter, r *http.Request, id, _ string) {
	var req api.AgentRenewRequest
	if !problem.DecodeJSON(w, r, 64<<10, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	chain, err := f.ca.issue(f.t, req.CSR, id, f.certLife)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	f.renewals++
	writeJSON(w, http.StatusOK, renewResponse{CertificateChain: chain})
}

func (f *fakeServer) newNonceLocked(id string) string {
	b := make([]byte, 16)
	rand.Read(b)
	n := base64.RawURLEncoding.EncodeToString(b)
	f.nonces[n] = id
	return n
}

func (f *fakeServer) nonce(w http.ResponseWriter, r *http.Request, id, _ string) {
	f.mu.Lock()
	n := f.newNonceLocked(id)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, nonceResponse{Nonce: n, ExpiresAt: time.Now().Add(10 * time.Minute)})
}

func (f *fakeServer) report(w http.ResponseWriter, r *http.Request, id, serial string) {
	var rep Report
	if !problem.DecodeJSON(w, r, 256<<10, &rep) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forgetNonces {
		clear(f.nonces)
	}
	if owner, ok := f.nonces[rep.Nonce]; !ok || owner != id {
		f.nonceInvalid++
		problem.Error(w, r, http.StatusConflict, "nonce-invalid", "missing, used or foreign nonce")
		return
	}
	delete(f.nonces, rep.Nonce) // single use
	f.reports = append(f.reports, receivedReport{device: id, serial: serial, report: rep})
	etag := ""
	if f.policy != nil {
		etag = f.policy.ETag()
	}
	writeJSON(w, http.StatusOK, reportResponse{Accepted: true, NextReportIn: f.nextReportIn, Nonce: f.newNonceLocked(id), PolicyETag: etag})
}

func (f *fakeServer) getPolicy(w http.ResponseWriter, r *http.Request, id, _ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policyCalls++
	if f.policy == nil {
		problem.NotFound(w, r, "no policy assigned")
		return
	}
	etag := f.policy.ETag()
	if r.Header.Get("If-None-Match") == etag {
		f.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	writeJSON(w, http.StatusOK, f.policy)
}

func (f *fakeServer) pollCommands(w http.ResponseWriter, r *http.Request, id, _ string) {
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || wait > 30*time.Second {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		cmds := append([]Command(nil), f.commands[id]...)
		f.mu.Unlock()
		if len(cmds) > 0 || time.Now().After(deadline) {
			writeJSON(w, http.StatusOK, commandsResponse{Commands: cmds})
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (f *fakeServer) result(w http.ResponseWriter, r *http.Request, id, _ string) {
	var res state.Result
	if !problem.DecodeJSON(w, r, 64<<10, &res) {
		return
	}
	cid := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resultCalls[cid]++
	if !f.ackResults {
		problem.Error(w, r, http.StatusInternalServerError, "internal-error", "not acknowledging for the test")
		return
	}
	f.results[cid] = res
	q := f.commands[id][:0]
	for _, c := range f.commands[id] {
		if c.ID != cid {
			q = append(q, c)
		}
	}
	f.commands[id] = q
	writeJSON(w, http.StatusOK, resultResponse{OK: true})
}

func (f *fakeServer) enqueue(device string, c Command) {
	f.set(func(f *fakeServer) { f.commands[device] = append(f.commands[device], c) })
}

func (f *fakeServer) reportsCopy() []receivedReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]receivedReport(nil), f.reports...)
}
