// Package mobile is the Hale client the organisation's messaging app links (with gomobile bind
// on iOS and Android): it registers the app instance with App Attest or Play Integrity and a
// binding token, reports what only the app can see under its key's signature, and gets posture
// tokens bound to its own key, with the DPoP proofs that present them to the messaging backend.
//
// The platform calls (DCAppAttestService, the Secure Enclave, Play Integrity, Android Keystore)
// stay in Swift or Kotlin behind the small interfaces below; README.md has reference snippets.
// The API keeps to what gomobile binds: strings, byte slices, bools, int64, errors, pointers to
// structs of those, and interfaces of such methods.
//
// It never imports the server: only the wire types (api) and the posture package's proofs.
package mobile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/posture"
)

// AppAttest is iOS's DCAppAttestService, implemented in Swift.
type AppAttest interface {
	// GenerateKey makes a new App Attest key and answers its identifier (base64).
	GenerateKey() (string, error)
	// AttestKey attests keyID over clientDataHash and answers the attestation object.
	AttestKey(keyID string, clientDataHash []byte) ([]byte, error)
	// GenerateAssertion signs clientDataHash with keyID and answers the assertion object.
	GenerateAssertion(keyID string, clientDataHash []byte) ([]byte, error)
}

// PlayIntegrity is Android's Play Integrity standard API, implemented in Kotlin.
type PlayIntegrity interface {
	// Token answers an integrity token for requestHash (StandardIntegrityTokenRequest).
	Token(requestHash string) (string, error)
}

// ProofKey is a hardware key that signs anything: a Secure Enclave key on iOS, an Android
// Keystore key on Android. Posture tokens are bound to it.
type ProofKey interface {
	// PublicKey answers the public key, PKIX DER (SubjectPublicKeyInfo), ECDSA P-256.
	PublicKey() ([]byte, error)
	// SignDigest signs a SHA-256 digest and answers an ASN.1 DER ECDSA signature.
	SignDigest(digest []byte) ([]byte, error)
}

// Store keeps the client's state across launches (the Keychain, EncryptedSharedPreferences).
type Store interface {
	// Get answers the value of key, "" when there is none.
	Get(key string) (string, error)
	Set(key, value string) error
}

// Claims are what the app observes that MDM cannot.
type Claims struct {
	// PasscodeSet: LAContext.canEvaluatePolicy(.deviceOwnerAuthentication) on iOS,
	// KeyguardManager.isDeviceSecure on Android.
	PasscodeSet bool
	// Jailbroken is the app's jailbreak or root heuristics' result.
	Jailbroken bool
	// ScreenCaptured: UIScreen.isCaptured on iOS; FLAG_SECURE off on Android.
	ScreenCaptured bool
	AppVersion     string
	OSVersion      string
}

// Token is a posture token bound to the app's proof key.
type Token struct {
	Token string
	// ExpiresAt is Unix seconds.
	ExpiresAt int64
	InGrace   bool
}

// Store keys.
const (
	keyInstance = "hale.instance_id"
	keyAppAttes = "hale.appattest_key_id"
)

// maxAnswer bounds what the client reads of an answer.
const maxAnswer = 1 << 20

// Client speaks the app API of one Hale server. Its methods are safe for concurrent use.
type Client struct {
	server  string
	hc      *http.Client
	ios     AppAttest
	play    PlayIntegrity
	key     ProofKey
	store   Store
	mu      sync.Mutex
	proofPK *ecdsa.PublicKey
}

// NewIOSClient returns a client for serverURL (https) trusting rootCAPEM (the server's root,
// GET /ca/root.pem; empty for the system roots) that proves itself with App Attest.
func NewIOSClient(serverURL string, rootCAPEM []byte, attest AppAttest, key ProofKey, store Store) (*Client, error) {
	if attest == nil {
		return nil, errors.New("mobile: App Attest is required on iOS")
	}
	c, err := newClient(serverURL, rootCAPEM, key, store)
	if err != nil {
		return nil, err
	}
	c.ios = attest
	return c, nil
}

// NewAndroidClient returns a client that proves itself with Play Integrity; key is the
// Android Keystore key that signs reports and proofs.
func NewAndroidClient(serverURL string, rootCAPEM []byte, play PlayIntegrity, key ProofKey, store Store) (*Client, error) {
	if play == nil {
		return nil, errors.New("mobile: Play Integrity is required on Android")
	}
	c, err := newClient(serverURL, rootCAPEM, key, store)
	if err != nil {
		return nil, err
	}
	c.play = play
	return c, nil
}

func newClient(serverURL string, rootCAPEM []byte, key ProofKey, store Store) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("mobile: server URL %q: want https://host[:port]", serverURL)
	}
	if key == nil || store == nil {
		return nil, errors.New("mobile: a proof key and a store are required")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if len(rootCAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rootCAPEM) {
			return nil, errors.New("mobile: the root CA holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &Client{server: strings.TrimRight(serverURL, "/"), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		key: key, store: store}, nil
}

// InstanceID answers the registered instance's ID, "" before Register.
func (c *Client) InstanceID() (string, error) { return c.store.Get(keyInstance) }

// Register registers this app instance with the one-time bindingToken IT issued (on a managed
// iPhone, the HaleBindingToken of the app's managed app configuration) and answers its ID.
func (c *Client) Register(bindingToken string) (string, error) {
	nonce, err := c.nonce()
	if err != nil {
		return "", err
	}
	der, err := c.key.PublicKey()
	if err != nil {
		return "", fmt.Errorf("mobile: proof key: %w", err)
	}
	req := api.AppRegisterRequest{BindingToken: bindingToken, Nonce: nonce, PublicKey: base64.StdEncoding.EncodeToString(der)}
	binding := api.AppRequestHash(nonce, der)
	keyID := ""
	switch {
	case c.ios != nil:
		if keyID, err = c.ios.GenerateKey(); err != nil {
			return "", fmt.Errorf("mobile: App Attest key: %w", err)
		}
		hash := sha256.Sum256([]byte(binding))
		att, err := c.ios.AttestKey(keyID, hash[:])
		if err != nil {
			return "", fmt.Errorf("mobile: App Attest attestation: %w", err)
		}
		req.Platform, req.KeyID, req.Attestation = "ios", keyID, base64.StdEncoding.EncodeToString(att)
	default:
		tok, err := c.play.Token(binding)
		if err != nil {
			return "", fmt.Errorf("mobile: Play Integrity: %w", err)
		}
		req.Platform, req.IntegrityToken = "android", tok
	}
	var ans api.AppRegisterAnswer
	if err := c.post("/app/v1/register", req, &ans); err != nil {
		return "", err
	}
	// Only a registered instance replaces the stored one: a refused attempt leaves it be.
	if keyID != "" {
		if err := c.store.Set(keyAppAttes, keyID); err != nil {
			return "", err
		}
	}
	return ans.InstanceID, c.store.Set(keyInstance, ans.InstanceID)
}

// Report sends claims, signed (an App Attest assertion on iOS, the Keystore key on Android).
func (c *Client) Report(claims *Claims) error {
	req, err := c.signed(claims)
	if err != nil {
		return err
	}
	return c.post("/app/v1/report", req, nil)
}

// Token reports claims and answers a posture token bound to the proof key, for the messaging
// backend; present it with Proof. A device Hale denies gets an error with the reasons.
func (c *Client) Token(claims *Claims) (*Token, error) {
	req, err := c.signed(claims)
	if err != nil {
		return nil, err
	}
	var ans api.PostureToken
	if err := c.post("/app/v1/token", req, &ans); err != nil {
		return nil, err
	}
	return &Token{Token: ans.Token, ExpiresAt: ans.ExpiresAt.Unix(), InGrace: ans.InGrace}, nil
}

// Proof answers the DPoP header value for one request presenting token to the backend
// ("Authorization: DPoP <token>", "DPoP: <proof>"): method and requestURL are the request's.
func (c *Client) Proof(method, requestURL, token string) (string, error) {
	pub, err := c.proofKey()
	if err != nil {
		return "", err
	}
	return posture.NewProof(pub, c.key.SignDigest, method, requestURL, token, randid.Hex(16), time.Now())
}

func (c *Client) proofKey() (*ecdsa.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proofPK != nil {
		return c.proofPK, nil
	}
	der, err := c.key.PublicKey()
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	pub, ok := k.(*ecdsa.PublicKey)
	if err != nil || !ok {
		return nil, errors.New("mobile: the proof key is not an ECDSA public key")
	}
	c.proofPK = pub
	return pub, nil
}

// signed builds a report request: a fresh nonce and claims, signed over their exact bytes.
func (c *Client) signed(claims *Claims) (*api.AppReportRequest, error) {
	if claims == nil {
		return nil, errors.New("mobile: claims are required")
	}
	id, err := c.store.Get(keyInstance)
	if err != nil || id == "" {
		return nil, errors.New("mobile: not registered: call Register first")
	}
	nonce, err := c.nonce()
	if err != nil {
		return nil, err
	}
	passcode, jb, captured := claims.PasscodeSet, claims.Jailbroken, claims.ScreenCaptured
	data, err := json.Marshal(api.AppReportData{Nonce: nonce, Claims: api.AppClaims{
		PasscodeSet: &passcode, Jailbroken: &jb, ScreenCaptured: &captured,
		AppVersion: claims.AppVersion, OSVersion: claims.OSVersion,
	}})
	if err != nil {
		return nil, err
	}
	hash := sha256.Sum256(data)
	var sig []byte
	if c.ios != nil {
		keyID, err := c.store.Get(keyAppAttes)
		if err != nil || keyID == "" {
			return nil, errors.New("mobile: the App Attest key is gone: register again")
		}
		if sig, err = c.ios.GenerateAssertion(keyID, hash[:]); err != nil {
			return nil, fmt.Errorf("mobile: App Attest assertion: %w", err)
		}
	} else if sig, err = c.key.SignDigest(hash[:]); err != nil {
		return nil, fmt.Errorf("mobile: signing the report: %w", err)
	}
	return &api.AppReportRequest{InstanceID: id, ClientData: base64.StdEncoding.EncodeToString(data),
		Assertion: base64.StdEncoding.EncodeToString(sig)}, nil
}

func (c *Client) nonce() (string, error) {
	var n api.AppNonceAnswer
	if err := c.post("/app/v1/nonce", nil, &n); err != nil {
		return "", err
	}
	return n.Nonce, nil
}

// Error is a refusal from the server: its HTTP status, stable code and detail.
type Error struct {
	Status int
	Code   string
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("hale: %d %s: %s", e.Status, e.Code, e.Detail) }

func (c *Client) post(path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(http.MethodPost, c.server+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("mobile: %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("mobile: %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var p struct{ Code, Detail string }
		if json.Unmarshal(b, &p) == nil {
			e.Code, e.Detail = p.Code, p.Detail
		}
		return e
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
