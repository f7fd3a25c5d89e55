package appattest

import (
	"os"
	"testing"
	"time"
)

// FuzzVerifyAttestation feeds arbitrary bytes to the CBOR and authenticator-data decoders: the
// verifier must refuse with a reason code, never panic, and never accept.
func FuzzVerifyAttestation(f *testing.F) {
	for _, r := range realAttestations {
		b, err := os.ReadFile(r.file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ca := newCA(f)
	k := newKey(f, testAppID)
	sim, err := k.Attest(ca, []byte("c"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sim)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xbf, 0xff})
	v, err := New(testTeam, testBundle, WithRoots(ca.Pool()), WithClock(func() time.Time { return time.Now() }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := v.VerifyAttestation(b, []byte("other challenge"), k.KeyID)
		if err == nil || got != nil {
			t.Fatalf("accepted fuzzed attestation: %v", got)
		}
		if ReasonOf(err) == "" {
			t.Fatalf("refusal without a reason: %v", err)
		}
	})
}

// FuzzVerifyAssertion does the same for assertions.
func FuzzVerifyAssertion(f *testing.F) {
	k := newKey(f, testAppID)
	a, err := k.Assert([]byte("body"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a)
	f.Add([]byte{0xa2, 0x69})
	v, err := New(testTeam, testBundle)
	if err != nil {
		f.Fatal(err)
	}
	other := newKey(f, testAppID)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := v.VerifyAssertion(b, []byte("body"), other.PublicKey(), 0); err == nil || ReasonOf(err) == "" {
			t.Fatalf("fuzzed assertion: %v", err)
		}
	})
}
