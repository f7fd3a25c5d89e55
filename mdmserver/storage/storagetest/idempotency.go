package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testIdempotency is the contract of idempotency.Repository and the rules over it.
func testIdempotency(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	type answer struct {
		CommandID string `json:"command_id"`
		State     string `json:"state"`
	}
	save := func(st storage.Store, k idempotency.Key, v any) error {
		return st.Update(ctx, func(tx storage.Tx) error { return idempotency.Save(ctx, tx.Idempotency(), k, v) })
	}
	load := func(st storage.Store, k idempotency.Key) (answer, bool) {
		t.Helper()
		var a answer
		found := false
		err := st.View(ctx, func(tx storage.Tx) error {
			var err error
			found, err = idempotency.Load(ctx, tx.Idempotency(), k, &a)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return a, found
	}

	k := idempotency.NewKey("tok_1", "/api/v1/devices/d_1/wipe", "retry-1")
	if _, found := load(st, k); found {
		t.Fatal("an answer before any was saved")
	}
	err := st.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Idempotency().Get(ctx, k); !errors.Is(err, idempotency.ErrNotFound) {
			t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
		}
		if err := tx.Idempotency().Put(ctx, k, json.RawMessage(`{}`)); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := save(st, k, answer{CommandID: "c1", State: "queued"}); err != nil {
		t.Fatal(err)
	}
	// A key belongs to its owner and route: the same header value elsewhere is another key.
	for _, other := range []idempotency.Key{
		idempotency.NewKey("tok_2", k.Route, k.Key),
		idempotency.NewKey("", k.Route, k.Key),
		idempotency.NewKey(k.Owner, "/api/v1/devices/d_1/lock", k.Key),
		idempotency.NewKey(k.Owner, k.Route, "retry-2"),
	} {
		if _, found := load(st, other); found {
			t.Errorf("key %+v found the answer of %+v", other, k)
		}
	}
	if a, found := load(st, k); !found || a.CommandID != "c1" || a.State != "queued" {
		t.Fatalf("saved answer = %+v, %v", a, found)
	}
	// The answer is updated once the command is queued; it outlives a reopen.
	if err := save(st, k, answer{CommandID: "c1", State: "sent"}); err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	if a, found := load(st, k); !found || a.State != "sent" {
		t.Fatalf("answer after a reopen = %+v, %v", a, found)
	}
	if k := idempotency.NewKey("", "/x", "y"); k.Owner != idempotency.Anonymous {
		t.Errorf("a key without a token belongs to %q", k.Owner)
	}
	if err := save(st, idempotency.NewKey("t", "/x", strings.Repeat("k", idempotency.MaxKeyLen+1)), answer{}); !errors.Is(err, idempotency.ErrInvalid) {
		t.Errorf("a key over MaxKeyLen: %v", err)
	}
	// An answer that no longer decodes is none: the request is carried out as new.
	odd := idempotency.NewKey("t", "/x", "odd")
	if err := save(st, odd, []int{1}); err != nil {
		t.Fatal(err)
	}
	if _, found := load(st, odd); found {
		t.Error("an answer of another shape was decoded")
	}
	// A unit of work that fails leaves no answer.
	lost := idempotency.NewKey("t", "/x", "lost")
	boom := errors.New("boom")
	err = st.Update(ctx, func(tx storage.Tx) error {
		if err := idempotency.Save(ctx, tx.Idempotency(), lost, answer{CommandID: "c9"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, found := load(st, lost); found {
		t.Error("a failed unit of work left its answer")
	}
	// Concurrent savers of different keys all land.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if err := save(st, idempotency.NewKey("t", "/c", fmt.Sprint(i)), answer{CommandID: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range 16 {
		if a, found := load(st, idempotency.NewKey("t", "/c", fmt.Sprint(i))); !found || a.CommandID != fmt.Sprint(i) {
			t.Errorf("concurrent save %d: %+v, %v", i, a, found)
		}
	}
}
