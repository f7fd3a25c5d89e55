package appattest

import (
	"encoding/hex"
	"os"
	"testing"
	"time"
)

// Real attestations made by iPhones, published as test data by the fido2-net-lib project
// (github.com/passwordless-lib/fido2-net-lib, Tests/Fido2.Tests/Fido2Tests.cs, tests
// TestAppleAppAttestDev and TestAppleAppAttestProd), each with the challenge its test hashes
// into clientDataHash. They chain to Apple's real App Attestation Root CA and are verified at
// a time inside their credential certificate's three-day validity.
var realAttestations = []struct {
	file, teamID, bundleID, challenge, keyID string
	env                                      Environment
	at                                       time.Time
}{
	{
		file: "testdata/fido2-net-lib-dev-2022-08-24.cbor", teamID: "VNP5A9S22V", bundleID: "76R387MAVZ",
		challenge: "This is a test. This will need to be removed before merging.",
		keyID:     "e0b3093bfc2447493a4c80f660181ba8aa31a894e857ca36e120901b3e7e1309",
		env:       Development, at: time.Date(2022, 8, 25, 0, 0, 0, 0, time.UTC),
	},
	{
		file: "testdata/fido2-net-lib-prod-2020-09-27.cbor", teamID: "8YE23NZS57", bundleID: "com.kayak.travel",
		challenge: "1234567890abcdefgh",
		keyID:     "5677ea8d2a74ad6cb2a8d86b7e1fbdfc884b22f5ee6133c0989115430978764a",
		env:       Production, at: time.Date(2020, 9, 28, 0, 0, 0, 0, time.UTC),
	},
}

func TestRealAppleAttestations(t *testing.T) {
	for _, r := range realAttestations {
		t.Run(r.file, func(t *testing.T) {
			att, err := os.ReadFile(r.file)
			if err != nil {
				t.Fatal(err)
			}
			keyID, _ := hex.DecodeString(r.keyID)
			at := func() time.Time { return r.at }
			v, err := New(r.teamID, r.bundleID, WithEnvironment(r.env), WithClock(at))
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.VerifyAttestation(att, []byte(r.challenge), keyID)
			if err != nil {
				t.Fatalf("real attestation refused: %v", err)
			}
			if hex.EncodeToString(got.KeyID) != r.keyID || len(got.Receipt) < 1000 || got.Environment != r.env {
				t.Fatalf("attested = %+v", got)
			}

			// The same bytes are refused when anything around them is wrong.
			refusals := []struct {
				name, reason string
				v            func() *Verifier
				challenge    string
				keyID        []byte
			}{
				{"wrong challenge", ReasonNonce, func() *Verifier { return v }, r.challenge + "x", keyID},
				{"wrong key id", ReasonKeyID, func() *Verifier { return v }, r.challenge, make([]byte, 32)},
				{"another app", ReasonRPID, func() *Verifier {
					w, _ := New(r.teamID, r.bundleID+".other", WithEnvironment(r.env), WithClock(at))
					return w
				}, r.challenge, keyID},
				{"other environment", ReasonAAGUID, func() *Verifier {
					other := Production
					if r.env == Production {
						other = Development
					}
					w, _ := New(r.teamID, r.bundleID, WithEnvironment(other), WithClock(at))
					return w
				}, r.challenge, keyID},
				{"expired today", ReasonChain, func() *Verifier {
					w, _ := New(r.teamID, r.bundleID, WithEnvironment(r.env))
					return w
				}, r.challenge, keyID},
			}
			for _, c := range refusals {
				got, err := c.v().VerifyAttestation(att, []byte(c.challenge), c.keyID)
				if ReasonOf(err) != c.reason || got != nil {
					t.Errorf("%s: got %v, %v; want reason %s", c.name, got, err, c.reason)
				}
			}
		})
	}
}
