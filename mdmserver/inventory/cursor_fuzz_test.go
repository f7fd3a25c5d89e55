package inventory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/halemdm/hale/mdmserver/inventory"
)

// FuzzListCursor feeds hostile cursors (they arrive in a query string) to List.
func FuzzListCursor(f *testing.F) {
	_, s := newStore(f)
	ctx := context.Background()
	for range 5 {
		if _, err := s.Create(ctx, agent("o", "g")); err != nil {
			f.Fatal(err)
		}
	}
	_, next, err := s.List(ctx, inventory.Filter{}, "", 2)
	if err != nil || next == "" {
		f.Fatalf("seed cursor: %q, %v", next, err)
	}
	for _, c := range []string{next, "", "djE6", "djE6ZF8wMDAwMDAwMDAwMDAwMDAw", "!!!", "v1:d_0000000000000000"} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		page, nextCursor, err := s.List(ctx, inventory.Filter{}, cursor, 2)
		if err != nil {
			if !errors.Is(err, inventory.ErrBadCursor) {
				t.Fatalf("cursor %q: unexpected error %v", cursor, err)
			}
			return
		}
		if len(page) > 2 {
			t.Fatalf("page of %d", len(page))
		}
		if nextCursor != "" {
			if _, err := inventory.DecodeCursor(nextCursor); err != nil {
				t.Fatalf("List returned an undecodable cursor %q", nextCursor)
			}
		}
	})
}
