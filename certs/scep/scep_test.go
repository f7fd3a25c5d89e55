package scep

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/nosql"
	smscep "github.com/smallstep/scep"
	scepx509 "github.com/smallstep/scep/x509util"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/seal"
)

var (
	oidSHA256DER    = []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	oidAES128CBCDER = []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02}
)

// challenges is a one-time challenge store that holds a challenge while its request is issued,
// as package enroll's does.
type challenges struct {
	mu       sync.Mutex
	m        map[string]string // challenge -> device ID
	held     map[string]bool
	released []error // why each released hold was released
}

func (c *challenges) check(_ context.Context, challenge string, _ *x509.CertificateRequest) (*Claim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.m[challenge]
	if !ok || c.held[challenge] {
		return nil, errors.New("unknown, used or held challenge")
	}
	if c.held == nil {
		c.held = map[string]bool{}
	}
	c.held[challenge] = true
	return &Claim{
		DeviceID: id,
		Commit: func(context.Context, *x509.Certificate) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.m, challenge)
			delete(c.held, challenge)
			return nil
		},
		Release: func(_ context.Context, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.held, challenge)
			c.released = append(c.released, err)
		},
	}, nil
}

// openCA opens a CA in a fresh directory, on smallstep's bbolt driver there, and closes both
// when the test ends.
func openCA(tb testing.TB, key *seal.Key) *certs.Authority {
	tb.Helper()
	dir := tb.TempDir()
	d, err := nosql.New(nosql.BBoltDriver, filepath.Join(dir, "ca.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	ca, err := certs.Open(dir, key, certs.WithDB(d))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ca.Close() })
	return ca
}

type fixture struct {
	ca  *certs.Authority
	srv *httptest.Server
}

func newFixture(t *testing.T, check ChallengeFunc) *fixture {
	t.Helper()
	raw := make([]byte, seal.KeySize)
	rand.Read(raw)
	key, _ := seal.New(raw)
	ca := openCA(t, key)
	s, err := New(ca, check)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{ca: ca, srv: srv}
}

func (f *fixture) get(t *testing.T, op string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + "/scep?operation=" + op)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// device is a SCEP client built from smallstep/scep, as an Apple device behaves.
type device struct {
	key    *rsa.PrivateKey
	signer *x509.Certificate // self-signed, as in an initial PKCSReq
}

func newDevice(t *testing.T) *device {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "SCEP client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &device{key: key, signer: cert}
}

// enroll runs GetCACert then PKIOperation (POST, or GET with the message in the URL) and
// returns the parsed CertRep.
func (d *device) enroll(t *testing.T, f *fixture, cn, challenge string, useGET bool) *smscep.PKIMessage {
	t.Helper()
	resp, body := f.get(t, "GetCACert")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-x509-ca-ra-cert" {
		t.Fatalf("GetCACert: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	caCerts, err := smscep.CACerts(body)
	if err != nil || len(caCerts) != 3 {
		t.Fatalf("GetCACert certs: %d, %v", len(caCerts), err)
	}
	csrDER, err := scepx509.CreateCertificateRequest(rand.Reader, &scepx509.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, SignatureAlgorithm: x509.SHA256WithRSA},
		ChallengePassword:  challenge,
	}, d.key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := smscep.NewCSRRequest(csr, &smscep.PKIMessage{
		MessageType: smscep.PKCSReq,
		Recipients:  caCerts,
		SignerKey:   d.key,
		SignerCert:  d.signer,
	}, smscep.WithCertsSelector(smscep.EnciphermentCertsSelector()))
	if err != nil {
		t.Fatal(err)
	}
	var r *http.Response
	if useGET {
		r, err = http.Get(f.srv.URL + "/scep?operation=PKIOperation&message=" + url.QueryEscape(base64.StdEncoding.EncodeToString(msg.Raw)))
	} else {
		r, err = http.Post(f.srv.URL+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg.Raw))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	rb, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/x-pki-message" {
		t.Fatalf("PKIOperation: %d %s %s", r.StatusCode, r.Header.Get("Content-Type"), rb)
	}
	rep, err := smscep.ParsePKIMessage(rb)
	if err != nil {
		t.Fatalf("CertRep does not parse: %v", err)
	}
	if rep.MessageType != smscep.CertRep || rep.TransactionID != msg.TransactionID || !bytes.Equal(rep.RecipientNonce, msg.SenderNonce) {
		t.Fatalf("CertRep type %v transaction %q nonce mismatch", rep.MessageType, rep.TransactionID)
	}
	// The CertRep is signed with SHA-256 and, on success, encrypted with AES-128-CBC.
	if !bytes.Contains(rb, oidSHA256DER) {
		t.Fatal("CertRep not signed with SHA-256")
	}
	if rep.PKIStatus == smscep.SUCCESS {
		if !bytes.Contains(rb, oidAES128CBCDER) {
			t.Fatal("CertRep content not encrypted with AES-128-CBC")
		}
		if err := rep.DecryptPKIEnvelope(d.signer, d.key); err != nil {
			t.Fatalf("decrypt CertRep: %v", err)
		}
	}
	return rep
}

func TestCaps(t *testing.T) {
	f := newFixture(t, (&challenges{}).check)
	resp, body := f.get(t, "GetCACaps")
	for _, c := range []string{"AES", "SHA-256", "POSTPKIOperation"} {
		if !strings.Contains(string(body), c) {
			t.Errorf("caps %q lack %s", body, c)
		}
	}
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if resp, _ := f.get(t, "Nope"); resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown op: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// The RA certificate: RSA, signs and decrypts, issued by the intermediate.
	_, body = f.get(t, "GetCACert")
	cs, _ := smscep.CACerts(body)
	ra := cs[0]
	if _, ok := ra.PublicKey.(*rsa.PublicKey); !ok || ra.KeyUsage&x509.KeyUsageKeyEncipherment == 0 || ra.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Fatalf("RA %T key usage %v", ra.PublicKey, ra.KeyUsage)
	}
	if err := ra.CheckSignatureFrom(f.ca.Intermediate()); err != nil {
		t.Fatal(err)
	}
}

func TestEnrollment(t *testing.T) {
	ch := &challenges{m: map[string]string{"good-1": "device-1", "good-2": "device-2"}}
	f := newFixture(t, ch.check)
	d := newDevice(t)

	for i, useGET := range []bool{false, true} {
		id := []string{"device-1", "device-2"}[i]
		rep := d.enroll(t, f, id, "good-"+id[len(id)-1:], useGET)
		if rep.PKIStatus != smscep.SUCCESS || rep.Certificate == nil {
			t.Fatalf("status %v fail %v", rep.PKIStatus, rep.FailInfo)
		}
		c := rep.Certificate
		if c.Subject.CommonName != id {
			t.Fatalf("CN %q, want %q", c.Subject.CommonName, id)
		}
		if !c.PublicKey.(*rsa.PublicKey).Equal(&d.key.PublicKey) {
			t.Fatal("issued for another key")
		}
		if d := time.Until(c.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
			t.Fatalf("Apple identity lifetime %v, want one year", d)
		}
		if err := f.ca.VerifyClientCert([]*x509.Certificate{c}); err != nil {
			t.Fatalf("issued identity does not verify: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(f.ca.Root())
		inter := x509.NewCertPool()
		inter.AddCert(f.ca.Intermediate())
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("does not chain to Root(): %v", err)
		}
	}
}

func TestEnrollmentRefused(t *testing.T) {
	ch := &challenges{m: map[string]string{"once": "device-1", "other": "device-9"}}
	f := newFixture(t, ch.check)
	d := newDevice(t)
	for _, tc := range []struct{ name, cn, challenge string }{
		{"wrong challenge", "device-1", "guess"},
		{"no challenge", "device-1", ""},
		{"CSR names another device", "device-1", "other"},
	} {
		rep := d.enroll(t, f, tc.cn, tc.challenge, false)
		if rep.PKIStatus != smscep.FAILURE || rep.FailInfo != smscep.BadRequest || rep.Certificate != nil {
			t.Errorf("%s: status %v fail %v", tc.name, rep.PKIStatus, rep.FailInfo)
		}
	}
	// The CSR the CA refused released its challenge, with the CA's reason, unspent.
	if len(ch.released) != 1 || !errors.Is(ch.released[0], certs.ErrBadRequest) {
		t.Fatalf("released holds: %v", ch.released)
	}
	if rep := d.enroll(t, f, "device-9", "other", false); rep.PKIStatus != smscep.SUCCESS {
		t.Fatalf("the challenge refused with a wrong CSR, used again: %v %v", rep.PKIStatus, rep.FailInfo)
	}
	if rep := d.enroll(t, f, "device-1", "once", false); rep.PKIStatus != smscep.SUCCESS {
		t.Fatalf("first use: %v %v", rep.PKIStatus, rep.FailInfo)
	}
	if rep := d.enroll(t, f, "device-1", "once", false); rep.PKIStatus != smscep.FAILURE {
		t.Fatal("challenge reused")
	}
}

func TestGarbage(t *testing.T) {
	f := newFixture(t, (&challenges{}).check)
	for name, body := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a pkcs7 message at all"),
		"der-ish": {0x30, 0x82, 0xff, 0xff, 0x06, 0x09},
	} {
		resp, err := http.Post(f.srv.URL+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
	resp, err := http.Post(f.srv.URL+"/scep?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(make([]byte, maxMessage+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("oversized: %d", resp.StatusCode)
	}
	resp, err = http.Get(f.srv.URL + "/scep?operation=PKIOperation&message=%%%")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("bad base64: %d", resp.StatusCode)
	}
}

// FuzzPKIOperation feeds arbitrary bytes to the PKIOperation path: no panic, and never a
// success without a valid challenge (the challenge store is empty).
func FuzzPKIOperation(f *testing.F) {
	raw := make([]byte, seal.KeySize)
	key, _ := seal.New(raw)
	ca := openCA(f, key)
	s, err := New(ca, (&challenges{}).check)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(b)))
		if w.Code == 200 {
			rep, err := smscep.ParsePKIMessage(w.Body.Bytes())
			if err != nil || rep.PKIStatus == smscep.SUCCESS {
				t.Fatalf("200 answer is not a failure CertRep: %v", err)
			}
		}
	})
}

// A certificate whose challenge could not be spent on it (another request took the challenge
// over) is revoked, and the request is refused.
func TestEnrollmentCommitFails(t *testing.T) {
	var issued *x509.Certificate
	check := func(context.Context, string, *x509.CertificateRequest) (*Claim, error) {
		return &Claim{DeviceID: "device-1",
			Commit: func(_ context.Context, c *x509.Certificate) error {
				issued = c
				return errors.New("the hold lapsed and another request took the challenge")
			},
			Release: func(context.Context, error) { t.Error("released after issuance") },
		}, nil
	}
	f := newFixture(t, check)
	rep := newDevice(t).enroll(t, f, "device-1", "any", false)
	if rep.PKIStatus != smscep.FAILURE || rep.Certificate != nil {
		t.Fatalf("status %v: a certificate whose challenge was not spent was handed out", rep.PKIStatus)
	}
	if issued == nil {
		t.Fatal("Commit was not called with the issued certificate")
	}
	if revoked, err := f.ca.IsRevoked(issued.SerialNumber); err != nil || !revoked {
		t.Fatalf("the unspent challenge's certificate is not revoked: %v %v", revoked, err)
	}
}
