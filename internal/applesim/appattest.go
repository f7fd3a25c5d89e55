package applesim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// AppAttestCA plays Apple's App Attest service: a root shaped like the "Apple App Attestation
// Root CA" (P-384) and an intermediate like "Apple App Attestation CA 1" that issues each
// attested key's credential certificate, with Apple's subject names and extensions.
type AppAttestCA struct {
	Root       *x509.Certificate
	root       *ecdsa.PrivateKey
	inter      *x509.Certificate
	interKey   *ecdsa.PrivateKey
	interDER   []byte
	receiptKey *ecdsa.PrivateKey
}

// NewAppAttestCA makes a root and an intermediate valid for ten years from now.
func NewAppAttestCA() (*AppAttestCA, error) {
	ca := &AppAttestCA{}
	var err error
	if ca.root, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.interKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.receiptKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	apple := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"Apple Inc."}, Province: []string{"California"}}
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: apple("Apple App Attestation Root CA (test)"),
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &ca.root.PublicKey, ca.root)
	if err != nil {
		return nil, err
	}
	if ca.Root, err = x509.ParseCertificate(rootDER); err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{
		SerialNumber: serialNumber(), Subject: apple("Apple App Attestation CA 1 (test)"),
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if ca.interDER, err = x509.CreateCertificate(rand.Reader, interTmpl, ca.Root, &ca.interKey.PublicKey, ca.root); err != nil {
		return nil, err
	}
	ca.inter, err = x509.ParseCertificate(ca.interDER)
	return ca, err
}

// Pool returns a pool holding only the root, for the verifier's WithRoots.
func (ca *AppAttestCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// AppAttestKey is one app instance's Secure Enclave key, as DCAppAttestService keeps it.
type AppAttestKey struct {
	// KeyID is the key identifier generateKey returns: SHA-256 of the public key.
	KeyID   []byte
	key     *ecdsa.PrivateKey
	appID   string
	aaguid  []byte
	mu      sync.Mutex // guards counter: an app may assert from several threads
	counter uint32
	// attestCounter is the counter an attestation states: 0 unless a test says otherwise.
	attestCounter uint32
}

// AppAttestOption changes what an attestation states, to make the refusals of a verifier.
type AppAttestOption func(*AppAttestKey)

// AttestDevelopment makes the key attest in the development environment (AAGUID appattestdevelop).
func AttestDevelopment() AppAttestOption {
	return func(k *AppAttestKey) { k.aaguid = []byte("appattestdevelop") }
}

// AttestCounter makes the attestation state counter n instead of Apple's 0.
func AttestCounter(n uint32) AppAttestOption { return func(k *AppAttestKey) { k.attestCounter = n } }

// NewAppAttestKey generates a key for the app whose App ID is appID (team ID "." bundle ID).
func NewAppAttestKey(appID string, opts ...AppAttestOption) (*AppAttestKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	point, _ := key.PublicKey.Bytes()
	id := sha256.Sum256(point)
	k := &AppAttestKey{KeyID: id[:], key: key, appID: appID, aaguid: append([]byte("appattest"), make([]byte, 7)...)}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

// PublicKey returns the key's public half.
func (k *AppAttestKey) PublicKey() *ecdsa.PublicKey { return &k.key.PublicKey }

// Attest returns the attestation object DCAppAttestService.attestKey returns for clientDataHash
// = SHA-256(challenge): CBOR in Apple's canonical layout {fmt, attStmt{x5c, receipt}, authData},
// the credential certificate carrying the nonce extension, issued by ca.
func (k *AppAttestKey) Attest(ca *AppAttestCA, challenge []byte) ([]byte, error) {
	h := sha256.Sum256(challenge)
	return k.AttestHash(ca, h[:])
}

// AttestHash is Attest given clientDataHash itself, as DCAppAttestService.attestKey takes it.
func (k *AppAttestKey) AttestHash(ca *AppAttestCA, clientDataHash []byte) ([]byte, error) {
	rpID := sha256.Sum256([]byte(k.appID))
	x, y := k.coordinates()
	cose, err := ctap2.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		return nil, err
	}
	auth := append([]byte{}, rpID[:]...)
	auth = append(auth, flagAT) // attested credential data follows the counter
	auth = binary.BigEndian.AppendUint32(auth, k.attestCounter)
	auth = append(auth, k.aaguid...)
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(k.KeyID)))
	auth = append(auth, k.KeyID...)
	auth = append(auth, cose...)

	nonce := sha256.Sum256(append(append([]byte{}, auth...), clientDataHash...))
	leaf, err := ca.credentialCertificate(k, nonce[:])
	if err != nil {
		return nil, err
	}
	receipt, err := ca.receipt(k, leaf)
	if err != nil {
		return nil, err
	}
	type attStmt struct {
		X5c     [][]byte `cbor:"x5c"`
		Receipt []byte   `cbor:"receipt"`
	}
	return ctap2.Marshal(struct {
		Fmt      string  `cbor:"fmt"`
		AttStmt  attStmt `cbor:"attStmt"`
		AuthData []byte  `cbor:"authData"`
	}{"apple-appattest", attStmt{[][]byte{leaf, ca.interDER}, receipt}, auth})
}

// Assert returns the assertion DCAppAttestService.generateAssertion returns for
// clientDataHash = SHA-256(clientData), advancing the key's counter as the Secure Enclave does.
func (k *AppAttestKey) Assert(clientData []byte) ([]byte, error) {
	h := sha256.Sum256(clientData)
	return k.AssertHash(h[:])
}

// AssertHash is Assert given clientDataHash itself, as generateAssertion takes it.
func (k *AppAttestKey) AssertHash(clientDataHash []byte) ([]byte, error) {
	k.mu.Lock()
	k.counter++
	n := k.counter
	k.mu.Unlock()
	return k.assert(clientDataHash, n)
}

// AssertWithCounter signs with an explicit counter, to replay or roll it back in tests.
func (k *AppAttestKey) AssertWithCounter(clientData []byte, counter uint32) ([]byte, error) {
	h := sha256.Sum256(clientData)
	return k.assert(h[:], counter)
}

func (k *AppAttestKey) assert(clientDataHash []byte, counter uint32) ([]byte, error) {
	rpID := sha256.Sum256([]byte(k.appID))
	auth := append(append([]byte{}, rpID[:]...), 0)
	auth = binary.BigEndian.AppendUint32(auth, counter)
	nonce := sha256.Sum256(append(append([]byte{}, auth...), clientDataHash...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, nonce[:])
	if err != nil {
		return nil, err
	}
	return ctap2.Marshal(struct {
		Signature         []byte `cbor:"signature"`
		AuthenticatorData []byte `cbor:"authenticatorData"`
	}{sig, auth})
}

func (k *AppAttestKey) coordinates() ([]byte, []byte) {
	point, _ := k.key.PublicKey.Bytes()
	return point[1:33], point[33:]
}

// flagAT marks attested credential data in authenticator data.
const flagAT = 0x40

// ctap2 encodes as Apple does: definite lengths, map keys in CTAP2 canonical order.
var ctap2 = func() cbor.EncMode {
	m, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

var (
	oidNonce     = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 2}
	oidOSVersion = asn1.ObjectIdentifier{1, 2, 840, 113635, 100, 8, 7}
)

// credentialCertificate issues the leaf Apple issues: CN is the hex key identifier, OU "AAA
// Certification", valid three days, with the nonce extension SEQUENCE { [1] OCTET STRING }.
func (ca *AppAttestCA) credentialCertificate(k *AppAttestKey, nonce []byte) ([]byte, error) {
	nonceExt, err := asn1.Marshal(struct {
		Nonce []byte `asn1:"tag:1,explicit"`
	}{nonce})
	if err != nil {
		return nil, err
	}
	osExt, err := asn1.Marshal(struct {
		Version []byte `asn1:"tag:1400,explicit"`
	}{[]byte("17.5")})
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Minute)
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(),
		Subject: pkix.Name{
			CommonName: hex.EncodeToString(k.KeyID), OrganizationalUnit: []string{"AAA Certification"},
			Organization: []string{"Apple Inc."}, Province: []string{"California"},
		},
		NotBefore: now, NotAfter: now.Add(72 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		ExtraExtensions: []pkix.Extension{
			{Id: oidOSVersion, Value: osExt},
			{Id: oidNonce, Value: nonceExt},
		},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.inter, &k.key.PublicKey, ca.interKey)
}

// receipt stands in for Apple's receipt, which the server stores for fraud-metric requests to
// Apple and never verifies itself: an ECDSA signature by a receipt key over the App ID, the
// credential certificate and the receipt type, so it is bytes of the right kind and size.
func (ca *AppAttestCA) receipt(k *AppAttestKey, leaf []byte) ([]byte, error) {
	body, err := asn1.Marshal(struct {
		AppID string
		Leaf  []byte
		Type  string
	}{k.appID, leaf, "ATTEST"})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, ca.receiptKey, digest[:])
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct{ Body, Sig []byte }{body, sig})
}

func serialNumber() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("applesim: serial: %v", err))
	}
	return n
}

// SecureEnclaveKey is a key an app makes in the Secure Enclave (SecKeyCreateRandomKey with
// kSecAttrTokenIDSecureEnclave): P-256, signing digests with SecKeyCreateSignature
// (ecdsaSignatureDigestX962SHA256, ASN.1 DER). Unlike an App Attest key it signs anything, so
// the messaging app signs its DPoP proofs with one, bound to its instance by the attestation.
type SecureEnclaveKey struct{ key *ecdsa.PrivateKey }

// NewSecureEnclaveKey makes a key.
func NewSecureEnclaveKey() (*SecureEnclaveKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &SecureEnclaveKey{k}, nil
}

// PublicKey returns the key's public half.
func (k *SecureEnclaveKey) PublicKey() *ecdsa.PublicKey { return &k.key.PublicKey }

// PKIX returns the public key as SecKeyCopyExternalRepresentation's point wrapped in a
// SubjectPublicKeyInfo, as the app sends it.
func (k *SecureEnclaveKey) PKIX() []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return der
}

// SignDigest signs a SHA-256 digest, ASN.1 DER.
func (k *SecureEnclaveKey) SignDigest(digest []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, k.key, digest)
}
