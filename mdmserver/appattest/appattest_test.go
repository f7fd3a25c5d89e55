package appattest

import (
	"bytes"
	"os"
	"testing"

	"github.com/halemdm/hale/internal/applesim"
)

const (
	testTeam   = "ABCDE12345"
	testBundle = "org.example.securetext"
	testAppID  = testTeam + "." + testBundle
)

func newCA(t testing.TB) *applesim.AppAttestCA {
	t.Helper()
	ca, err := applesim.NewAppAttestCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newKey(t testing.TB, appID string, opts ...applesim.AppAttestOption) *applesim.AppAttestKey {
	t.Helper()
	k, err := applesim.NewAppAttestKey(appID, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newVerifier(t testing.TB, ca *applesim.AppAttestCA, opts ...Option) *Verifier {
	t.Helper()
	v, err := New(testTeam, testBundle, append([]Option{WithRoots(ca.Pool())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSimulatedAttestationLayout checks that the simulator's objects have the real ones'
// layout byte for byte up to the first variable field, so the verifier is tested on Apple's format.
func TestSimulatedAttestationLayout(t *testing.T) {
	real, err := os.ReadFile(realAttestations[0].file)
	if err != nil {
		t.Fatal(err)
	}
	ca := newCA(t)
	sim, err := newKey(t, testAppID).Attest(ca, []byte("challenge"))
	if err != nil {
		t.Fatal(err)
	}
	// a3 "fmt" "apple-appattest" "attStmt" a2 "x5c" 82 59 ...: the map heads, key order and
	// the two-certificate array are Apple's.
	prefix := real[:bytes.Index(real, []byte("x5c"))+4]
	if !bytes.HasPrefix(sim, prefix) {
		t.Fatalf("simulated attestation starts % x, real % x", sim[:len(prefix)], prefix)
	}
	for _, key := range []string{"receipt", "authData"} {
		if !bytes.Contains(sim, []byte(key)) {
			t.Fatalf("simulated attestation lacks %s", key)
		}
	}
}

func TestAttestationAndAssertions(t *testing.T) {
	ca := newCA(t)
	v := newVerifier(t, ca)
	k := newKey(t, testAppID)
	challenge := []byte("server-nonce-1")
	att, err := k.Attest(ca, challenge)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyAttestation(att, challenge, k.KeyID)
	if err != nil {
		t.Fatalf("attestation refused: %v", err)
	}
	if !got.PublicKey.Equal(k.PublicKey()) || got.Environment != Production || len(got.Receipt) == 0 {
		t.Fatalf("attested = %+v", got)
	}

	var last uint32
	for i := 0; i < 3; i++ {
		body := []byte(`{"report":` + string(rune('0'+i)) + `}`)
		a, err := k.Assert(body)
		if err != nil {
			t.Fatal(err)
		}
		n, err := v.VerifyAssertion(a, body, got.PublicKey, last)
		if err != nil || n <= last {
			t.Fatalf("assertion %d: counter %d, %v", i, n, err)
		}
		// The same assertion again is a replay.
		if _, err := v.VerifyAssertion(a, body, got.PublicKey, n); ReasonOf(err) != ReasonAssertionReplay {
			t.Fatalf("replayed assertion: %v", err)
		}
		last = n
	}
	body := []byte("next")
	rolled, _ := k.AssertWithCounter(body, last-1)
	if _, err := v.VerifyAssertion(rolled, body, got.PublicKey, last); ReasonOf(err) != ReasonAssertionReplay {
		t.Fatalf("rolled-back counter: %v", err)
	}
	fresh, _ := k.Assert(body)
	if _, err := v.VerifyAssertion(fresh, []byte("other body"), got.PublicKey, last); ReasonOf(err) != ReasonAssertionSignature {
		t.Fatalf("assertion over other client data: %v", err)
	}
	other := newKey(t, testAppID)
	if _, err := v.VerifyAssertion(fresh, body, other.PublicKey(), last); ReasonOf(err) != ReasonAssertionSignature {
		t.Fatalf("assertion checked with another key: %v", err)
	}
	foreign := newKey(t, "ZZZZZ99999.org.example.other")
	fa, _ := foreign.Assert(body)
	if _, err := v.VerifyAssertion(fa, body, foreign.PublicKey(), 0); ReasonOf(err) != ReasonAssertionRPID {
		t.Fatalf("assertion of another app: %v", err)
	}
}

func TestAttestationRefusals(t *testing.T) {
	ca := newCA(t)
	v := newVerifier(t, ca)
	challenge := []byte("server-nonce")
	attest := func(k *applesim.AppAttestKey, ca *applesim.AppAttestCA) []byte {
		b, err := k.Attest(ca, challenge)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := newKey(t, testAppID)
	goodAtt := attest(good, ca)
	tampered := bytes.Clone(goodAtt)
	// The first byte of authData's RP ID hash, after the key and the two-byte length head.
	tampered[bytes.Index(tampered, []byte("authData"))+len("authData")+2] ^= 1

	cases := []struct {
		name      string
		v         *Verifier
		att       []byte
		challenge []byte
		keyID     []byte
		reason    string
	}{
		{"another root", v, attest(newKey(t, testAppID), newCA(t)), challenge, nil, ReasonChain},
		{"wrong challenge", v, goodAtt, []byte("another"), good.KeyID, ReasonNonce},
		{"wrong RP ID", v, nil, challenge, nil, ReasonRPID},
		{"counter not zero", v, nil, challenge, nil, ReasonCounter},
		{"development AAGUID", v, nil, challenge, nil, ReasonAAGUID},
		{"key id of another key", v, goodAtt, challenge, newKey(t, testAppID).KeyID, ReasonKeyID},
		{"tampered authData", v, tampered, challenge, good.KeyID, ReasonNonce},
		{"not CBOR", v, []byte("{}"), challenge, good.KeyID, ReasonMalformed},
		{"too large", v, make([]byte, MaxAttestationSize+1), challenge, good.KeyID, ReasonMalformed},
	}
	// Keys whose attestation states something wrong.
	for i, opt := range map[int]*applesim.AppAttestKey{
		2: newKey(t, "ZZZZZ99999."+testBundle),
		3: newKey(t, testAppID, applesim.AttestCounter(1)),
		4: newKey(t, testAppID, applesim.AttestDevelopment()),
	} {
		cases[i].att = attest(opt, ca)
		cases[i].keyID = opt.KeyID
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.v.VerifyAttestation(c.att, c.challenge, c.keyID)
			if ReasonOf(err) != c.reason || got != nil {
				t.Fatalf("got %v, %v; want refusal %s", got, err, c.reason)
			}
		})
	}

	dev := newKey(t, testAppID, applesim.AttestDevelopment())
	if _, err := newVerifier(t, ca, WithEnvironment(Development)).VerifyAttestation(attest(dev, ca), challenge, dev.KeyID); err != nil {
		t.Fatalf("development attestation with a development verifier: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New("", "b"); err == nil {
		t.Fatal("empty team ID accepted")
	}
	if _, err := New("a", "b", WithEnvironment("staging")); err == nil {
		t.Fatal("unknown environment accepted")
	}
}
