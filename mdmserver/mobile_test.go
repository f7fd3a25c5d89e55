package mdmserver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/playsim"
	"github.com/halemdm/hale/mobile"
	"github.com/halemdm/hale/posture"
)

// simAppAttest is DCAppAttestService on a simulated iPhone, as the Swift side of the client
// gives it to package mobile.
type simAppAttest struct {
	ca   *applesim.AppAttestCA
	mu   sync.Mutex
	keys map[string]*applesim.AppAttestKey
}

func (s *simAppAttest) GenerateKey() (string, error) {
	k, err := applesim.NewAppAttestKey(testAppTeam + "." + testAppBundle)
	if err != nil {
		return "", err
	}
	id := base64.StdEncoding.EncodeToString(k.KeyID)
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
	return id, nil
}

func (s *simAppAttest) key(id string) (*applesim.AppAttestKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[id]; k != nil {
		return k, nil
	}
	return nil, errors.New("DCError.invalidKey")
}

func (s *simAppAttest) AttestKey(id string, hash []byte) ([]byte, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, err
	}
	return k.AttestHash(s.ca, hash)
}

func (s *simAppAttest) GenerateAssertion(id string, hash []byte) ([]byte, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, err
	}
	return k.AssertHash(hash)
}

// memStore is the Keychain.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) Get(k string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k], nil
}

func (s *memStore) Set(k, v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}

// keystoreKey is an Android Keystore key.
type keystoreKey struct{ k *ecdsa.PrivateKey }

func (k keystoreKey) PublicKey() ([]byte, error) { return x509.MarshalPKIXPublicKey(&k.k.PublicKey) }
func (k keystoreKey) SignDigest(d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, k.k, d)
}

// simPlay is the Play Integrity standard API on a genuine device.
type simPlay struct{ s *playsim.Service }

func (p simPlay) Token(requestHash string) (string, error) {
	return p.s.Token(playsim.Genuine(testAppBundle, testAppCert, requestHash, time.Now()))
}

// seKey adapts applesim's Secure Enclave key to mobile.ProofKey.
type seKey struct{ *applesim.SecureEnclaveKey }

func (k seKey) PublicKey() ([]byte, error) { return k.PKIX(), nil }

// The client the messaging app links, on both platforms, against the real server: register
// with the token from the managed app configuration (iOS) or from IT (Android), report, get a
// token, open a backend session with its DPoP proof.
func TestMobileClient(t *testing.T) {
	env, ca, play := appEnv(t)
	env.uploadPushCert()
	it := env.token("it")
	if code := env.call("PUT", "/api/v1/policies/phones", it, []byte("integrity:\n  require_app_attestation: true\n"), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"phones"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}
	rootPEM := env.CAForTest().RootPEM()
	verifier := posture.NewVerifier(posture.RemoteJWKS(env.URL+"/access/v1/jwks.json", env.Client), posture.WithIssuer(env.PublicURL))
	backend := httptest.NewServer(posture.Middleware(&posture.Gate{Verifier: verifier, PublicURL: "https://chat.example.org"})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer backend.Close()

	for _, platform := range []string{"ios", "android"} {
		t.Run(platform, func(t *testing.T) {
			state := applesim.IOSState()
			state.ManagedApps = []string{testAppBundle}
			dev := env.newDevice(applesim.WithState(state))
			var bind api.AppBindingAnswer
			if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/app-bindings", env.token("it"), []byte(`{"deliver":true}`), &bind); code != 201 {
				t.Fatalf("binding: %d", code)
			}
			env.waitCommand(dev.UDID(), bind.CommandID)
			store := &memStore{m: map[string]string{}}
			var c *mobile.Client
			var err error
			if platform == "ios" {
				se, _ := applesim.NewSecureEnclaveKey()
				conf := dev.ManagedAppConfiguration(testAppBundle)
				c, err = mobile.NewIOSClient(conf[api.AppConfigServerURL].(string), rootPEM,
					&simAppAttest{ca: ca, keys: map[string]*applesim.AppAttestKey{}}, seKey{se}, store)
				bind.Token = conf[api.AppConfigBindingToken].(string)
			} else {
				k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				c, err = mobile.NewAndroidClient(env.URL, rootPEM, simPlay{play}, keystoreKey{k}, store)
			}
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.Register(bind.Token)
			if err != nil || id == "" {
				t.Fatalf("register: %q %v", id, err)
			}
			if _, err := c.Register(bind.Token); err == nil {
				t.Fatal("a used binding token registered again")
			}
			claims := &mobile.Claims{PasscodeSet: true, AppVersion: "3.2.1", OSVersion: "17.5"}
			if err := c.Report(claims); err != nil {
				t.Fatalf("report: %v", err)
			}
			tok, err := c.Token(claims)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			proof, err := c.Proof("POST", "https://chat.example.org/sessions", tok.Token)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("POST", backend.URL+"/sessions", nil)
			req.Header.Set("Authorization", "DPoP "+tok.Token)
			req.Header.Set(posture.DPoPHeader, proof)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("backend session: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}
