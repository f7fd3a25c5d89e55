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
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/halemdm/hale/internal/testclock"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
