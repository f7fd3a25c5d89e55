package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/internal/testclock"
)

func newMasterKey(t testing.TB) *seal.Key {
	t.Helper()
	b := make([]byte, seal.KeySize)
	rand.Read(b)
	k, err := seal.New(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openCA(t testing.TB, dir string, key *seal.Key, opts ...Option) *Authority {
	t.Helper()
	a, err := Open(dir, key, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func newTestCA(t testing.TB, opts ...Option) *Authority {
	return openCA(t, t.TempDir(), newMasterKey(t), opts...)
}

func p256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func cnCSR(t testing.TB, key crypto.Signer, cn string) *x509.CertificateRequest {
	return makeCSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}})
}

// issueAgent issues an agent identity for deviceID and returns it as a tls.Certificate.
func issueAgent(t testing.TB, a *Authority, deviceID string) *tls.Certificate {
	t.Helper()
	key := p256(t)
	chain, err := a.Sign(context.Background(), cnCSR(t, key, deviceID), Profile{Kind: KindAgent, DeviceID: deviceID})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func fingerprint(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

func TestOpenCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	key := newMasterKey(t)
	a, err := Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	root, inter := a.Root(), a.Intermediate()
	if !root.IsCA || !inter.IsCA || !inter.MaxPathLenZero {
		t.Fatal("root and intermediate must be CAs; the intermediate must have path length 0")
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Fatalf("intermediate not signed by root: %v", err)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("root key %T, want ECDSA", root.PublicKey)
	}
	if d := root.NotAfter.Sub(root.NotBefore); d < RootLifetime {
		t.Errorf("root lifetime %v", d)
	}
	if d := inter.NotAfter.Sub(inter.NotBefore); d < IntermediateLifetime || inter.NotAfter.After(root.NotAfter) {
		t.Errorf("intermediate lifetime %v, not after %v (root %v)", d, inter.NotAfter, root.NotAfter)
	}
	for _, name := range []string{fileRootKey, fileIntermediateKey} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a plaintext PEM key", name)
		}
		if _, err := x509.ParsePKCS8PrivateKey(b); err == nil {
			t.Errorf("%s holds a plaintext DER key", name)
		}
		fi, _ := os.Stat(filepath.Join(dir, name))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", name, fi.Mode().Perm())
		}
	}
	if !bytes.Equal(a.RootPEM(), mustRead(t, filepath.Join(dir, fileRoot))) {
		t.Error("RootPEM differs from root.pem")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := openCA(t, dir, key)
	if fingerprint(b.Root()) != fingerprint(root) || fingerprint(b.Intermediate()) != fingerprint(inter) {
		t.Fatal("restart made a new CA instead of reusing the stored one")
	}
	rest, err := parseChainPEM(b.ChainPEM())
	if err != nil || len(rest) != 2 || !rest[0].Equal(inter) || !rest[1].Equal(root) {
		t.Fatalf("ChainPEM = %d certs, %v", len(rest), err)
	}
}

func TestOpenWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	a := openCA(t, dir, newMasterKey(t))
	a.Close()
	_, err := Open(dir, newMasterKey(t))
	if err == nil {
		t.Fatal("Open with another master key succeeded")
	}
	if !errors.Is(err, seal.ErrOpen) || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("unclear error: %v", err)
	}
	if _, err := Open(dir, nil); err == nil {
		t.Fatal("Open without a master key succeeded")
	}
}

func TestOpenTamperedIntermediateRefused(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	openCA(t, dir, key).Close()
	other := t.TempDir()
	openCA(t, other, key).Close()
	// An intermediate from another CA next to this root must not load.
	if err := os.WriteFile(filepath.Join(dir, fileIntermediate), mustRead(t, filepath.Join(other, fileIntermediate)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, key); err == nil {
		t.Fatal("foreign intermediate accepted")
	}
}

func TestSignLifetimesAndProfile(t *testing.T) {
	clk := testclock.New(time.Now())
	a := newTestCA(t, WithClock(clk.Now), WithCRLURL("https://mdm.example.org/ca/crl"))
	for _, tc := range []struct {
		kind Kind
		want time.Duration
	}{{KindAgent, 90 * 24 * time.Hour}, {KindAppleMDM, 365 * 24 * time.Hour}} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			now := clk.Now()
			chain, err := a.Sign(context.Background(), cnCSR(t, p256(t), "dev-1"), Profile{Kind: tc.kind, DeviceID: "dev-1"})
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if len(chain) != 2 || !chain[1].Equal(a.Intermediate()) {
				t.Fatal("chain must be leaf + intermediate")
			}
			if got := leaf.NotAfter.Sub(now); got < tc.want-time.Second || got > tc.want+time.Second {
				t.Errorf("lifetime from now = %v, want %v", got, tc.want)
			}
			if leaf.NotBefore.After(now) {
				t.Errorf("NotBefore %v after now %v", leaf.NotBefore, now)
			}
			if leaf.Subject.CommonName != "dev-1" || len(leaf.DNSNames)+len(leaf.URIs)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
				t.Errorf("subject %v SANs %v %v", leaf.Subject, leaf.DNSNames, leaf.URIs)
			}
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ExtKeyUsage %v, want clientAuth only", leaf.ExtKeyUsage)
			}
			if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
				t.Errorf("IsCA %v KeyUsage %v", leaf.IsCA, leaf.KeyUsage)
			}
			if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != "https://mdm.example.org/ca/crl" {
				t.Errorf("CRL DP %v", leaf.CRLDistributionPoints)
			}
			if err := a.VerifyClientCert(chain); err != nil {
				t.Errorf("fresh identity does not verify: %v", err)
			}
		})
	}

	// Near the end of the intermediate's life, leaves are clamped to it.
	clk.Set(a.Intermediate().NotAfter.Add(-10 * 24 * time.Hour))
	chain, err := a.Sign(context.Background(), cnCSR(t, p256(t), "dev-2"), Profile{Kind: KindAppleMDM, DeviceID: "dev-2"})
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(a.Intermediate().NotAfter) {
		t.Errorf("leaf NotAfter %v, want clamped to intermediate %v", chain[0].NotAfter, a.Intermediate().NotAfter)
	}
	// After the intermediate expired nothing is issued.
	clk.Set(a.Intermediate().NotAfter.Add(time.Hour))
	if _, err := a.Sign(context.Background(), cnCSR(t, p256(t), "dev-3"), Profile{Kind: KindAgent, DeviceID: "dev-3"}); err == nil {
		t.Error("issued a leaf after the intermediate expired")
	}
}

func TestSignServer(t *testing.T) {
	a := newTestCA(t)
	// The CSR asks for other names; the profile wins.
	csr := makeCSR(t, p256(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil"}, DNSNames: []string{"evil.example"}})
	chain, err := a.Sign(context.Background(), csr, Profile{Kind: KindServer, Names: []string{"mdm.example.org", "127.0.0.1", "::1"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "mdm.example.org" || len(leaf.IPAddresses) != 2 {
		t.Fatalf("names %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("ExtKeyUsage %v", leaf.ExtKeyUsage)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < ServerLifetime || d > ServerLifetime+2*backdate {
		t.Fatalf("server lifetime %v", d)
	}
	if err := a.VerifyClientCert(chain); err == nil {
		t.Fatal("a server certificate passed as a client identity")
	}
}

func TestSignAcceptsKeyTypes(t *testing.T) {
	a := newTestCA(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"p256": p256(t), "p384": p384, "ed25519": ed, "rsa2048": rsa2048} {
		chain, err := a.Sign(context.Background(), cnCSR(t, key, "dev"), Profile{Kind: KindAgent, DeviceID: "dev"})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := a.VerifyClientCert(chain); err != nil {
			t.Errorf("%s: issued identity does not verify: %v", name, err)
		}
	}
	// An empty subject is fine: the device ID comes from the profile.
	if _, err := a.Sign(context.Background(), makeCSR(t, p256(t), nil), Profile{Kind: KindAgent, DeviceID: "dev"}); err != nil {
		t.Errorf("empty subject: %v", err)
	}
}

func TestSignRefuses(t *testing.T) {
	a := newTestCA(t)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	good := cnCSR(t, p256(t), "dev")
	badSig := cnCSR(t, p256(t), "dev")
	badSig.Signature = bytes.Clone(badSig.Signature)
	badSig.Signature[len(badSig.Signature)-1] ^= 0xff
	u, _ := url.Parse("urn:hale:other")
	agent := Profile{Kind: KindAgent, DeviceID: "dev"}
	for name, tc := range map[string]struct {
		csr *x509.CertificateRequest
		p   Profile
	}{
		"rsa1024":          {cnCSR(t, rsa1024, "dev"), agent},
		"p224":             {cnCSR(t, p224, "dev"), agent},
		"bad signature":    {badSig, agent},
		"foreign CN":       {cnCSR(t, p256(t), "someone-else"), agent},
		"foreign DNS":      {makeCSR(t, p256(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev"}, DNSNames: []string{"other"}}), agent},
		"foreign URI":      {makeCSR(t, p256(t), &x509.CertificateRequest{URIs: []*url.URL{u}}), agent},
		"email SAN":        {makeCSR(t, p256(t), &x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}), agent},
		"IP SAN":           {makeCSR(t, p256(t), &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), agent},
		"no device ID":     {good, Profile{Kind: KindAgent}},
		"control chars":    {good, Profile{Kind: KindAgent, DeviceID: "dev\n"}},
		"long ID":          {good, Profile{Kind: KindAgent, DeviceID: strings.Repeat("x", maxDeviceIDLen+1)}},
		"no kind":          {good, Profile{DeviceID: "dev"}},
		"server w/o names": {good, Profile{Kind: KindServer}},
		"server bad name":  {good, Profile{Kind: KindServer, Names: []string{"bad name"}}},
		"nil csr":          {nil, agent},
	} {
		if _, err := a.Sign(context.Background(), tc.csr, tc.p); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", name, err)
		}
	}
}

// tlsServer starts a real TLS server with the CA's server certificate and client verification.
// Its handler answers with the client's device ID.
func tlsServer(t *testing.T, a *Authority) *httptest.Server {
	t.Helper()
	sc, err := a.ServerCertificate([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.ClientIdentity(r.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, id.DeviceID)
	}))
	srv.TLS = &tls.Config{GetCertificate: sc.GetCertificate, MinVersion: tls.VersionTLS12}
	a.ConfigureClientAuth(srv.TLS)
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// call makes one request on a new connection (or a resumed session when cache is set).
func call(t *testing.T, a *Authority, url string, cert *tls.Certificate, cache tls.ClientSessionCache) (string, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(a.Root())
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + string(b))
	}
	return string(b), nil
}

func TestMTLSHandshake(t *testing.T) {
	a := newTestCA(t)
	srv := tlsServer(t, a)

	good := issueAgent(t, a, "dev-ok")
	if got, err := call(t, a, srv.URL, good, nil); err != nil || got != "dev-ok" {
		t.Fatalf("fresh identity: %q, %v", got, err)
	}
	// A leaf sent without its intermediate (as Apple devices do) is accepted.
	leafOnly := *good
	leafOnly.Certificate = leafOnly.Certificate[:1]
	if _, err := call(t, a, srv.URL, &leafOnly, nil); err != nil {
		t.Fatalf("leaf without intermediate: %v", err)
	}
	// No client certificate: the handshake passes, the handler refuses.
	if _, err := call(t, a, srv.URL, nil, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no client cert: %v", err)
	}

	// Revocation takes effect on the next handshake, resumed sessions included.
	victim := issueAgent(t, a, "dev-lost")
	cache := tls.NewLRUClientSessionCache(4)
	if _, err := call(t, a, srv.URL, victim, cache); err != nil {
		t.Fatalf("before revoke: %v", err)
	}
	if err := a.Revoke(context.Background(), victim.Leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, a, srv.URL, victim, cache); err == nil {
		t.Fatal("revoked certificate accepted (resumed session)")
	}
	if _, err := call(t, a, srv.URL, victim, nil); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{victim.Leaf}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("VerifyClientCert(revoked) = %v", err)
	}
	// Others are unaffected.
	if _, err := call(t, a, srv.URL, good, nil); err != nil {
		t.Fatalf("good identity after another revoke: %v", err)
	}

	// A certificate from a foreign CA with the same names is refused.
	foreign := newTestCA(t)
	alien := issueAgent(t, foreign, "dev-ok")
	if _, err := call(t, a, srv.URL, alien, nil); err == nil {
		t.Fatal("foreign CA certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{alien.Leaf, foreign.Intermediate()}); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(foreign) = %v", err)
	}
	if err := a.VerifyClientCert(nil); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(nil) = %v", err)
	}
}

func TestMTLSRefusesExpired(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	now := time.Now()
	// The CA is made 200 days ago; an agent identity issued 100 days ago expired 10 days ago.
	clk := testclock.New(now.Add(-200 * 24 * time.Hour))
	old := openCA(t, dir, key, WithClock(clk.Now))
	clk.Set(now.Add(-100 * 24 * time.Hour))
	expired := issueAgent(t, old, "dev-old")
	clk.Set(now.Add(-24 * time.Hour))
	recent := issueAgent(t, old, "dev-new")
	old.Close()

	a := openCA(t, dir, key) // restart on the real clock
	srv := tlsServer(t, a)
	if _, err := call(t, a, srv.URL, recent, nil); err != nil {
		t.Fatalf("valid identity issued before restart: %v", err)
	}
	if _, err := call(t, a, srv.URL, expired, nil); err == nil {
		t.Fatal("expired certificate accepted")
	}
	if err := a.VerifyClientCert([]*x509.Certificate{expired.Leaf}); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("VerifyClientCert(expired) = %v", err)
	}
	if _, err := a.Renew(context.Background(), expired.Leaf); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("Renew(expired) = %v", err)
	}
}

func TestRevocationSurvivesRestartAndCRL(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	a := openCA(t, dir, key)
	c1 := issueAgent(t, a, "dev-1")
	c2 := issueAgent(t, a, "dev-2")

	crl0, err := a.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(context.Background(), c1.Leaf.SerialNumber, "cessationOfOperation"); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(context.Background(), c1.Leaf.SerialNumber, "again"); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if err := a.Revoke(context.Background(), big.NewInt(12345), ""); !errors.Is(err, ErrUnknownCertificate) {
		t.Fatalf("revoke unknown serial: %v", err)
	}
	if ok, _ := a.IsRevoked(c1.Leaf.SerialNumber); !ok {
		t.Fatal("IsRevoked false after Revoke")
	}
	if ok, _ := a.IsRevoked(c2.Leaf.SerialNumber); ok {
		t.Fatal("unrelated certificate revoked")
	}
	der, err := a.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(der, crl0) {
		t.Fatal("CRL not reissued after revocation")
	}
	rl := parseCRL(t, a, der)
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(c1.Leaf.SerialNumber) != 0 {
		t.Fatalf("CRL entries %+v", rl.RevokedCertificateEntries)
	}
	if rl.RevokedCertificateEntries[0].ReasonCode != 5 {
		t.Errorf("reason code %d, want 5 (cessationOfOperation)", rl.RevokedCertificateEntries[0].ReasonCode)
	}
	if again, _ := a.CRL(context.Background()); !bytes.Equal(again, der) {
		t.Error("CRL not cached between calls")
	}
	a.Close()

	b := openCA(t, dir, key)
	if ok, _ := b.IsRevoked(c1.Leaf.SerialNumber); !ok {
		t.Fatal("revocation lost on restart")
	}
	if err := b.VerifyClientCert([]*x509.Certificate{c1.Leaf}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after restart VerifyClientCert(revoked) = %v", err)
	}
	der, err = b.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rl := parseCRL(t, b, der); len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL after restart lists %d", len(rl.RevokedCertificateEntries))
	}
}

func parseCRL(t *testing.T, a *Authority, der []byte) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("CRL does not parse: %v", err)
	}
	if err := rl.CheckSignatureFrom(a.Intermediate()); err != nil {
		t.Fatalf("CRL not signed by the intermediate: %v", err)
	}
	if !rl.NextUpdate.After(time.Now()) {
		t.Fatalf("CRL NextUpdate %v in the past", rl.NextUpdate)
	}
	return rl
}

func TestHandlers(t *testing.T) {
	a := newTestCA(t)
	c := issueAgent(t, a, "dev")
	if err := a.Revoke(context.Background(), c.Leaf.SerialNumber, "superseded"); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ca/root.pem", a.RootHandler())
	mux.Handle("/ca/crl", a.CRLHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/ca/root.pem")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-pem-file" || !bytes.Equal(body, a.RootPEM()) {
		t.Fatalf("root: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	resp, err = http.Get(srv.URL + "/ca/crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("crl: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if rl := parseCRL(t, a, body); len(rl.RevokedCertificateEntries) != 1 {
		t.Fatal("served CRL misses the revocation")
	}

	resp, err = http.Post(srv.URL+"/ca/crl", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	var prob struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	json.NewDecoder(resp.Body).Decode(&prob)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Content-Type") != "application/problem+json" || prob.Status != 405 {
		t.Fatalf("POST: %d %q %+v", resp.StatusCode, resp.Header.Get("Content-Type"), prob)
	}
}

func TestRenew(t *testing.T) {
	a := newTestCA(t)
	c := issueAgent(t, a, "dev-r")
	time.Sleep(1100 * time.Millisecond) // certificate times have one-second resolution
	chain, err := a.Renew(context.Background(), c.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	n := chain[0]
	if n.SerialNumber.Cmp(c.Leaf.SerialNumber) == 0 || n.Subject.CommonName != "dev-r" ||
		!n.PublicKey.(*ecdsa.PublicKey).Equal(c.Leaf.PublicKey) || !n.NotAfter.After(c.Leaf.NotAfter) {
		t.Fatalf("renewed: serial %v cn %q not after %v (old %v)", n.SerialNumber, n.Subject.CommonName, n.NotAfter, c.Leaf.NotAfter)
	}
	if d := n.NotAfter.Sub(n.NotBefore); d < AgentLifetime || d > AgentLifetime+2*backdate {
		t.Fatalf("renewed lifetime %v", d)
	}
	if err := a.VerifyClientCert(chain); err != nil {
		t.Fatalf("renewed identity does not verify: %v", err)
	}
	// The renewed certificate is in the DB: it can be revoked by serial.
	if err := a.Revoke(context.Background(), n.SerialNumber, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Renew(context.Background(), n); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Renew(revoked) = %v", err)
	}
	foreign := issueAgent(t, newTestCA(t), "dev-r")
	if _, err := a.Renew(context.Background(), foreign.Leaf); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("Renew(foreign) = %v", err)
	}
}

func TestServerCertificateRenewsBeforeExpiry(t *testing.T) {
	clk := testclock.New(time.Now())
	a := newTestCA(t, WithClock(clk.Now))
	sc, err := a.ServerCertificate([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	first := sc.Leaf()
	if len(first.IPAddresses) != 1 || !first.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || first.DNSNames[0] != "localhost" {
		t.Fatalf("names %v %v", first.DNSNames, first.IPAddresses)
	}
	if c, _ := sc.GetCertificate(nil); c.Leaf != first {
		t.Fatal("renewed too early")
	}
	// Past two thirds of the lifetime: the current certificate is served while a new one is made.
	clk.Set(clk.Now().Add(ServerLifetime * 3 / 4))
	if c, err := sc.GetCertificate(nil); err != nil || c.Leaf != first {
		t.Fatalf("during renewal: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sc.Leaf() == first && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sc.Leaf() == first {
		t.Fatal("server certificate not renewed")
	}
	// Expired: renewed before the handshake continues.
	second := sc.Leaf()
	clk.Set(second.NotAfter.Add(time.Hour))
	c, err := sc.GetCertificate(nil)
	if err != nil || c.Leaf == second || !c.Leaf.NotAfter.After(clk.Now()) {
		t.Fatalf("expired certificate not replaced: %v", err)
	}
}

func TestOpenSSLVerify(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	a := newTestCA(t)
	c := issueAgent(t, a, "dev-ossl")
	dir := t.TempDir()
	write := func(name string, der ...[]byte) string {
		var b []byte
		for _, d := range der {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("root.pem", a.Root().Raw)
	inter := write("inter.pem", a.Intermediate().Raw)
	leaf := write("leaf.pem", c.Leaf.Raw)
	out, err := exec.Command(openssl, "verify", "-purpose", "sslclient", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	// With the CRL, openssl must see the revocation.
	if err := a.Revoke(context.Background(), c.Leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	der, err := a.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl := filepath.Join(dir, "crl.pem")
	os.WriteFile(crl, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o600)
	out, err = exec.Command(openssl, "verify", "-crl_check", "-CRLfile", crl, "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "revoked") {
		t.Fatalf("openssl accepted a revoked leaf: %v\n%s", err, out)
	}
}

func FuzzSignCSR(f *testing.F) {
	a := newTestCA(f)
	key := p256(f)
	for _, tmpl := range []*x509.CertificateRequest{
		{Subject: pkix.Name{CommonName: "fuzz-dev"}},
		{DNSNames: []string{"fuzz-dev"}},
		{Subject: pkix.Name{CommonName: "other"}},
	} {
		der, _ := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		f.Add(der)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		chain, err := a.Sign(context.Background(), csr, Profile{Kind: KindAgent, DeviceID: "fuzz-dev"})
		if err != nil {
			return
		}
		if chain[0].Subject.CommonName != "fuzz-dev" || chain[0].IsCA {
			t.Fatalf("issued %v", chain[0].Subject)
		}
	})
}

func BenchmarkVerifyClientCert(b *testing.B) {
	a := newTestCA(b)
	c := issueAgent(b, a, "bench")
	chain := []*x509.Certificate{c.Leaf}
	for b.Loop() {
		if err := a.VerifyClientCert(chain); err != nil {
			b.Fatal(err)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseChainPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func TestSCEPRA(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	clk := testclock.New(time.Now())
	a := openCA(t, dir, key, WithClock(clk.Now))
	ra, raKey, err := a.SCEPRA()
	if err != nil {
		t.Fatal(err)
	}
	if ra.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment || ra.IsCA {
		t.Fatalf("RA key usage %v", ra.KeyUsage)
	}
	if err := ra.CheckSignatureFrom(a.Intermediate()); err != nil {
		t.Fatal(err)
	}
	if b := mustRead(t, filepath.Join(dir, fileRAKey)); bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Fatal("RA key stored in plaintext")
	} else if _, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		t.Fatal("RA key stored in plaintext DER")
	}
	a.Close()

	b := openCA(t, dir, key, WithClock(clk.Now))
	ra2, raKey2, err := b.SCEPRA()
	if err != nil {
		t.Fatal(err)
	}
	if !ra2.Equal(ra) || !raKey2.Equal(raKey) {
		t.Fatal("restart did not reuse the RA")
	}
	// Late in its life the RA certificate is reissued for the same key.
	clk.Set(ra.NotAfter.Add(-24 * time.Hour))
	ra3, raKey3, err := b.SCEPRA()
	if err != nil {
		t.Fatal(err)
	}
	if ra3.Equal(ra) || !raKey3.Equal(raKey) || !ra3.NotAfter.After(ra.NotAfter) {
		t.Fatal("RA certificate not reissued for the same key")
	}
}
