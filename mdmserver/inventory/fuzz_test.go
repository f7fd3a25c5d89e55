package inventory

import (
	"math/big"
	"testing"
)

func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"0A:1B", "0x00ff", "ff", "", "-1", "0x", "::", "00000000000000000000000000000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := NormalizeSerial(s)
		if !ok {
			return
		}
		// Canonical output is a fixed point and round-trips through big.Int.
		again, ok := NormalizeSerial(n)
		if !ok || again != n {
			t.Fatalf("NormalizeSerial(%q) = %q, not a fixed point (%q)", s, n, again)
		}
		v, ok := new(big.Int).SetString(n, 16)
		if !ok || SerialHex(v) != n {
			t.Fatalf("NormalizeSerial(%q) = %q does not round-trip", s, n)
		}
	})
}
