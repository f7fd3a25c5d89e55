// Package randid makes the random identifiers and secrets Hale hands out (request, device,
// command and token IDs, nonces, PINs), from crypto/rand, in one place.
//
// crypto/rand.Read never fails on the platforms Go supports (since Go 1.24 it aborts the program
// rather than return an error or short read), so these functions return no error; before 1.24
// some copies of this code panicked on an error and others ignored it.
package randid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
)

// Bytes returns n random bytes.
func Bytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: see the package comment
	return b
}

// Hex returns n random bytes in lower-case hex (2n characters).
func Hex(n int) string { return hex.EncodeToString(Bytes(n)) }

// UUID returns a random (version 4) UUID in upper case, as Apple's tools write them.
func UUID() string {
	b := Bytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Digits returns n random decimal digits (a PIN), each uniform in 0-9.
func Digits(n int) string {
	out := make([]byte, n)
	ten := big.NewInt(10)
	for i := range out {
		d, err := rand.Int(rand.Reader, ten)
		if err != nil {
			panic("randid: crypto/rand failed: " + err.Error()) // unreachable: see the package comment
		}
		out[i] = byte('0' + d.Int64())
	}
	return string(out)
}
