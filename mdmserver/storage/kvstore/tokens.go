package kvstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/halemdm/hale/mdmserver/tokens"
)

// BucketTokens holds the API tokens: token ID -> tokens.Token JSON.
var BucketTokens = []byte("api_tokens")

var tokensBuckets = [][]byte{BucketTokens}

// Tokens returns the API tokens in this transaction.
func (t *tx) Tokens() tokens.Repository { return tokensRepo{t} }

// tokensRepo is tokens.Repository on the api_tokens bucket.
type tokensRepo struct{ t *tx }

func (r tokensRepo) Get(ctx context.Context, id string) (*tokens.Token, error) {
	b, err := bucket(r.t.tx, BucketTokens)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, tokens.ErrNotFound
	}
	t := new(tokens.Token)
	if err := json.Unmarshal(v, t); err != nil {
		return nil, fmt.Errorf("tokens: token %s: %w", id, err)
	}
	return t, nil
}

func (r tokensRepo) Put(ctx context.Context, t *tokens.Token) error {
	b, err := bucket(r.t.tx, BucketTokens)
	if err != nil {
		return err
	}
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return b.Put([]byte(t.ID), v)
}

func (r tokensRepo) List(ctx context.Context) ([]*tokens.Token, error) {
	b, err := bucket(r.t.tx, BucketTokens)
	if err != nil {
		return nil, err
	}
	var out []*tokens.Token
	err = b.ForEach(func(k, v []byte) error {
		t := new(tokens.Token)
		if err := json.Unmarshal(v, t); err != nil {
			return fmt.Errorf("tokens: token %s: %w", k, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

func (r tokensRepo) Count(ctx context.Context) (int, error) {
	b, err := bucket(r.t.tx, BucketTokens)
	if err != nil {
		return 0, err
	}
	return b.KeyN()
}
