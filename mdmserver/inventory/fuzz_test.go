package inventory

import (
	"context"
	"errors"
	"math/big"
	"testing"
)

// FuzzListCursor feeds hostile cursors (they arrive in a query string) to List.
func FuzzListCursor(f *testing.F) {
	s, _ := newStore(f)
	ctx := context.Background()
	for range 5 {
		if _, err := s.Create(ctx, agent("o", "g")); err != nil {
			f.Fatal(err)
		}
	}
	_, next, err := s.List(ctx, Filter{}, "", 2)
	if err != nil || next == "" {
		f.Fatalf("seed cursor: %q, %v", next, err)
	}
	for _, c := range []string{next, "", "djE6", "djE6ZF8wMDAwMDAwMDAwMDAwMDAw", "!!!", "v1:d_0000000000000000"} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		page, nextCursor, err := s.List(ctx, Filter{}, cursor, 2)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("cursor %q: unexpected error %v", cursor, err)
			}
			return
		}
		if len(page) > 2 {
			t.Fatalf("page of %d", len(page))
		}
		if nextCursor != "" {
			if _, err := decodeCursor(nextCursor); err != nil {
				t.Fatalf("List returned an undecodable cursor %q", nextCursor)
			}
		}
	})
}

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
