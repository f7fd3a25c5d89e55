package installer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/toolneed"
)

// codeSigningCert writes a test root and a code-signing certificate it issued (with the root
// after it, as osslsigncode embeds the chain) and the signer's key, and returns the files.
func codeSigningCert(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Hale Test Code Signing Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "Hale IT"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, caPEM, 0o600)
	os.WriteFile(certFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), caPEM...), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return caFile, certFile, keyFile
}

// The executable inside the MSI and the MSI are signed, and both verify against the test root
// with osslsigncode; a file signed by another root does not.
func TestMSISigned(t *testing.T) {
	toolneed.Require(t, "wixl", "msiinfo", "osslsigncode", "msiextract")
	exe := filepath.Join(t.TempDir(), "mdmagent.exe")
	build := exec.Command("go", "build", "-o", exe, "./testdata/hello")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	caFile, certFile, keyFile := codeSigningCert(t)
	c := testConfig(t, FormatMSI)
	c.Binary = exe
	c.Sign = &Signer{CertFile: certFile, KeyFile: keyFile}
	p, err := Build(t.Context(), c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, "osslsigncode", "verify", "-CAfile", caFile, "-in", p)
	if !strings.Contains(out, "Signature verification: ok") {
		t.Errorf("msi verify:\n%s", out)
	}
	dir := t.TempDir()
	run(t, "msiextract", "-C", dir, p)
	var inner string
	filepath.WalkDir(dir, func(path string, _ os.DirEntry, _ error) error {
		if filepath.Base(path) == "mdmagent.exe" {
			inner = path
		}
		return nil
	})
	if inner == "" {
		t.Fatal("no mdmagent.exe in the MSI")
	}
	out = run(t, "osslsigncode", "verify", "-CAfile", caFile, "-in", inner)
	if !strings.Contains(out, "Signature verification: ok") {
		t.Errorf("exe verify:\n%s", out)
	}
	otherCA, _, _ := codeSigningCert(t)
	if out, err := exec.Command("osslsigncode", "verify", "-CAfile", otherCA, "-in", p).CombinedOutput(); err == nil {
		t.Errorf("verified against another root:\n%s", out)
	}
}
