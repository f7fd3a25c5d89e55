package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// mapRepo is a Repository in a map: the rules here need no backend (the contract every backend
// meets is in mdmserver/storage/storagetest/idempotency.go).
type mapRepo map[Key]json.RawMessage

func (m mapRepo) Get(_ context.Context, k Key) (json.RawMessage, error) {
	v, ok := m[k]
	if !ok {
		return nil, ErrNotFound
	}
	return v, nil
}

func (m mapRepo) Put(_ context.Context, k Key, v json.RawMessage) error { m[k] = v; return nil }

func TestLoadAndSave(t *testing.T) {
	ctx := context.Background()
	r := mapRepo{}
	if k := NewKey("", "/x", "k"); k.Owner != Anonymous {
		t.Errorf("owner of a key without a token = %q", k.Owner)
	}
	k := NewKey("tok", "/x", "k")
	var got struct{ A int }
	if ok, err := Load(ctx, r, k, &got); ok || err != nil {
		t.Fatalf("Load before Save = %v, %v", ok, err)
	}
	if err := Save(ctx, r, k, struct{ A int }{7}); err != nil {
		t.Fatal(err)
	}
	if ok, err := Load(ctx, r, k, &got); !ok || err != nil || got.A != 7 {
		t.Fatalf("Load = %+v, %v, %v", got, ok, err)
	}
	r[k] = json.RawMessage(`"a string"`)
	if ok, err := Load(ctx, r, k, &got); ok || err != nil {
		t.Errorf("an answer of another shape: %v, %v", ok, err)
	}
	long := NewKey("tok", "/x", strings.Repeat("k", MaxKeyLen+1))
	if err := Save(ctx, r, long, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Save of a key over MaxKeyLen: %v", err)
	}
	if _, ok := r[long]; ok {
		t.Error("a refused key was saved")
	}
}
