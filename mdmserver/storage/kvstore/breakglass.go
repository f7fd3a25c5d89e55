package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/halemdm/hale/mdmserver/breakglass"
)

// BucketBreakGlass holds the break-glass uses: use ID -> breakglass.Use JSON.
var BucketBreakGlass = []byte("break_glass")

var breakGlassBuckets = [][]byte{BucketBreakGlass}

// BreakGlass returns the emergency access uses in this transaction.
func (t *tx) BreakGlass() breakglass.Repository { return breakGlassRepo{t} }

// breakGlassRepo is breakglass.Repository on the break_glass bucket. Uses are rare (a handful a
// month in a hospital), so List reads them all.
type breakGlassRepo struct{ t *tx }

func (r breakGlassRepo) Get(ctx context.Context, id string) (*breakglass.Use, error) {
	b, err := bucket(r.t.tx, BucketBreakGlass)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %s", breakglass.ErrNotFound, id)
	}
	var u breakglass.Use
	if err := json.Unmarshal(v, &u); err != nil {
		return nil, fmt.Errorf("break-glass use %s: %w", id, err)
	}
	return &u, nil
}

func (r breakGlassRepo) Put(ctx context.Context, u *breakglass.Use) error {
	if u.ID == "" {
		return fmt.Errorf("break-glass use without an ID")
	}
	b, err := bucket(r.t.tx, BucketBreakGlass)
	if err != nil {
		return err
	}
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return b.Put([]byte(u.ID), v)
}

func (r breakGlassRepo) List(ctx context.Context) ([]*breakglass.Use, error) {
	b, err := bucket(r.t.tx, BucketBreakGlass)
	if err != nil {
		return nil, err
	}
	var out []*breakglass.Use
	err = b.ForEach(func(k, v []byte) error {
		var u breakglass.Use
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("break-glass use %s: %w", k, err)
		}
		out = append(out, &u)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}
