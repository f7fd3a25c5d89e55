// Package fleet enrolls agent devices through a real Hale server's APIs and makes them report,
// for the benchmark harnesses that need a fleet the server built itself (not an index filled
// in memory): an enrollment token from the admin API, a CSR to POST /agent/v1/enroll, then
// nonce-bound posture reports over mutual TLS, exactly as mdmagent does.
package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/apitest"
)

// Server is the Hale server the fleet talks to.
type Server struct {
	// URL is the server's base URL (https://host:port).
	URL string
	// Client reaches the server's token APIs (the server's root CA trusted).
	Client *http.Client
	// Roots is the server's CA, which agents trust.
	Roots *x509.CertPool
	// TB fails the run.
	TB apitest.TB
}

// Call sends a JSON request with a bearer token and returns the status (apitest.Do).
func (s *Server) Call(method, path, token string, body, out any) int {
	return apitest.Do(s.TB, s.Client, method, s.URL+path, token, body, out)
}

// Token creates an API token with role, authorised by the admin token.
func (s *Server) Token(admin, role string) string {
	var tok struct{ Token string }
	if code := s.Call("POST", "/api/v1/tokens", admin, map[string]string{"name": role, "role": role}, &tok); code != http.StatusCreated {
		s.TB.Fatalf("create %s token: %d", role, code)
	}
	return tok.Token
}

// Agent is one enrolled agent identity: its device ID and its mutual-TLS client.
type Agent struct {
	ID     string
	client *http.Client
	srv    *Server

	mu  sync.Mutex
	seq int64
}

// Enroll enrolls an agent identity with an enrollment token made with it (an IT token) and
// returns it; it has not reported yet.
func (s *Server) Enroll(it string) *Agent {
	var e struct{ Token string }
	s.Call("POST", "/api/v1/enrollments", it, `{"owner":"bench","group":"ward","platform":"agent","ttl":"1h"}`, &e)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.TB.Fatalf("key: %v", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		s.TB.Fatalf("csr: %v", err)
	}
	var id struct {
		DeviceID         string `json:"device_id"`
		CertificateChain string `json:"certificate_chain"`
	}
	if code := s.Call("POST", "/agent/v1/enroll", "", map[string]any{"token": e.Token,
		"csr":   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		"facts": map[string]string{"hostname": "bench", "os": "linux", "os_version": "24.04"}}, &id); code != http.StatusCreated {
		s.TB.Fatalf("agent enroll: %d", code)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		s.TB.Fatalf("key: %v", err)
	}
	cert, err := tls.X509KeyPair([]byte(id.CertificateChain), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		s.TB.Fatalf("agent certificate: %v", err)
	}
	return &Agent{ID: id.DeviceID, srv: s, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.Roots, Certificates: []tls.Certificate{cert}}}}}
}

// EnrollCompliant enrolls an agent identity and sends one report with disk and swap
// encrypted, which the benchmarks' policy (encryption required) takes as compliant.
func (s *Server) EnrollCompliant(it string) *Agent {
	a := s.Enroll(it)
	a.Report()
	return a
}

// Report sends the agent's next posture report (a fresh nonce, the next sequence number; disk
// and swap encrypted) and fails the run unless the server accepts it.
func (a *Agent) Report() {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.srv
	var nonce struct{ Nonce string }
	apitest.Do(s.TB, a.client, "GET", s.URL+"/agent/v1/nonce", "", nil, &nonce)
	a.seq++
	now := time.Now().UTC()
	claim := map[string]any{"value": true, "source": "agent", "observed_at": now}
	report := map[string]any{"nonce": nonce.Nonce, "sequence": a.seq, "collected_at": now, "posture": map[string]any{
		"platform": "linux", "reported_at": now, "disk_encrypted": claim, "swap_encrypted": claim}}
	if code := apitest.Do(s.TB, a.client, "POST", s.URL+"/agent/v1/report", "", report, nil); code != http.StatusOK {
		s.TB.Fatalf("report of %s: %d", a.ID, code)
	}
	// An agent reports every few minutes: each report is a new connection, as in the field,
	// and a fleet of thousands holds no idle connections in between.
	a.client.CloseIdleConnections()
}
