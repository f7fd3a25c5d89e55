package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
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
	a, err := Open(dir, key, append([]Option{withTestDB(t, dir)}, opts...)...)
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
	a, err := Open(dir, key, withTestDB(t, dir))
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
	_, err := Open(dir, newMasterKey(t), withTestDB(t, dir))
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
	if _, err := Open(dir, key, withTestDB(t, dir)); err == nil {
		t.Fatal("foreign intermediate accepted")
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
