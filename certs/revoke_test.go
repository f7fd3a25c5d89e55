package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

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
