package fakeapns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// oidUID is the UserID attribute (RFC 4519) that carries the APNs topic
// in the subject of an Apple push certificate.
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// GeneratePushCert makes a self-signed stand-in for an Apple MDM push
// certificate: its subject carries topic in the UserID attribute, as
// Apple's do, so nanomdm's push certificate store and the fake's topic
// check both find it. It returns PEM certificate and PEM (PKCS #8) key,
// the form nanomdm's StorePushCert and Hale's PUT /api/v1/pushcert take.
// The topic must start with "com.apple.mgmt." like a real one.
func GeneratePushCert(topic string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !strings.HasPrefix(topic, "com.apple.mgmt.") {
		return nil, nil, fmt.Errorf("fakeapns: push topic %q lacks the com.apple.mgmt. prefix of an MDM topic", topic)
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("fakeapns: push certificate validity must be positive, got %v", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("fakeapns: generating push key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("fakeapns: generating serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName: "APSP:" + topic,
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidUID, Value: topic}},
		},
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("fakeapns: creating push certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("fakeapns: encoding push key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
