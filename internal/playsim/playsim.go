// Package playsim plays Google's Play Integrity service for tests: it holds an organisation's
// response keys as the Play Console gives them (a base64 AES-256 decryption key and a base64
// DER EC P-256 verification key) and issues integrity tokens in Google's format, a compact
// JWE {"alg":"A256KW","enc":"A256GCM"} around a compact JWS {"alg":"ES256"} around the verdict
// JSON with Google's field names.
package playsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Service is one organisation's Play Integrity response keys.
type Service struct {
	// DecryptionKey and VerificationKey are what the Play Console shows under "Manage response
	// encryption", to configure the verifier with.
	DecryptionKey   string
	VerificationKey string
	aes             []byte
	signer          *ecdsa.PrivateKey
}

// New makes fresh response keys.
func New() (*Service, error) {
	s := &Service{aes: make([]byte, 32)}
	if _, err := rand.Read(s.aes); err != nil {
		return nil, err
	}
	var err error
	if s.signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&s.signer.PublicKey)
	if err != nil {
		return nil, err
	}
	s.DecryptionKey = base64.StdEncoding.EncodeToString(s.aes)
	s.VerificationKey = base64.StdEncoding.EncodeToString(der)
	return s, nil
}

// RequestDetails, AppIntegrity, DeviceIntegrity and Payload mirror Google's verdict JSON.
type RequestDetails struct {
	RequestPackageName string `json:"requestPackageName"`
	TimestampMillis    string `json:"timestampMillis"`
	Nonce              string `json:"nonce,omitempty"`
	RequestHash        string `json:"requestHash,omitempty"`
}

// AppIntegrity is the appIntegrity object.
type AppIntegrity struct {
	AppRecognitionVerdict   string   `json:"appRecognitionVerdict"`
	PackageName             string   `json:"packageName,omitempty"`
	CertificateSha256Digest []string `json:"certificateSha256Digest,omitempty"`
	VersionCode             string   `json:"versionCode,omitempty"`
}

// DeviceIntegrity is the deviceIntegrity object; an empty list means no integrity.
type DeviceIntegrity struct {
	DeviceRecognitionVerdict []string `json:"deviceRecognitionVerdict,omitempty"`
}

// AccountDetails is the accountDetails object.
type AccountDetails struct {
	AppLicensingVerdict string `json:"appLicensingVerdict"`
}

// Payload is the whole verdict.
type Payload struct {
	RequestDetails  RequestDetails   `json:"requestDetails"`
	AppIntegrity    AppIntegrity     `json:"appIntegrity"`
	DeviceIntegrity *DeviceIntegrity `json:"deviceIntegrity,omitempty"`
	AccountDetails  AccountDetails   `json:"accountDetails"`
}

// CertificateDigest returns the base64url SHA-256 digest Google reports for a signing
// certificate's DER bytes.
func CertificateDigest(der []byte) string {
	d := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(d[:])
}

// Genuine returns the verdict of a Play-recognized app on a device that meets device
// integrity, bound to requestHash and issued at.
func Genuine(pkg, certDigest, requestHash string, at time.Time) Payload {
	return Payload{
		RequestDetails: RequestDetails{
			RequestPackageName: pkg, RequestHash: requestHash,
			TimestampMillis: strconv.FormatInt(at.UnixMilli(), 10),
		},
		AppIntegrity: AppIntegrity{
			AppRecognitionVerdict: "PLAY_RECOGNIZED", PackageName: pkg,
			CertificateSha256Digest: []string{certDigest}, VersionCode: "42",
		},
		DeviceIntegrity: &DeviceIntegrity{DeviceRecognitionVerdict: []string{"MEETS_DEVICE_INTEGRITY"}},
		AccountDetails:  AccountDetails{AppLicensingVerdict: "LICENSED"},
	}
}

// Token signs and encrypts p as Google does.
func (s *Service) Token(p Payload) (string, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.signer}, nil)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(body)
	if err != nil {
		return "", err
	}
	inner, err := jws.CompactSerialize()
	if err != nil {
		return "", err
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.A256KW, Key: s.aes}, nil)
	if err != nil {
		return "", err
	}
	jwe, err := enc.Encrypt([]byte(inner))
	if err != nil {
		return "", err
	}
	return jwe.CompactSerialize()
}
