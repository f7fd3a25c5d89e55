package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// kvTx is kvstore.Tx on one PostgreSQL transaction. kvstore's Get and cursor moves return no
// error, so the first failed read is kept in err and fails the whole unit of work (Store.run).
type kvTx struct {
	ctx      context.Context
	tx       pgx.Tx
	writable bool
	err      error
	// writes counts the writes to each bucket, so a cursor knows its read-ahead may be stale.
	writes map[string]int
	// followed are the buckets whose writes go into the change feed; changed, the bucket and
	// key pairs this transaction wrote of them.
	followed map[string]bool
	changed  map[[2]string]bool
	origin   string // the Store's, for the change feed
	// values are the values this transaction read or wrote, by bucket and key (nil: missing),
	// so a repository reading a key again (an index checked, then moved) costs no round trip.
	values map[[2]string][]byte
}

// cached returns the value of bucket/key this transaction already knows.
func (t *kvTx) cached(bucket string, key []byte) (v []byte, ok bool) {
	v, ok = t.values[[2]string{bucket, string(key)}]
	return v, ok
}

// remember records the value of bucket/key as the transaction now sees it (nil: missing).
func (t *kvTx) remember(bucket string, key, v []byte) {
	if t.values == nil {
		t.values = map[[2]string][]byte{}
	}
	t.values[[2]string{bucket, string(key)}] = v
}

var (
	_ kvstore.Tx         = (*kvTx)(nil)
	_ kvstore.Prefetcher = (*kvTx)(nil)
)

// Prefetch reads the keys this transaction does not know yet in one query and remembers them
// (found or missing), so the Gets that follow cost no round trip.
func (t *kvTx) Prefetch(keys []kvstore.BucketKey) {
	var buckets []string
	var ks [][]byte
	for _, k := range keys {
		if _, ok := t.cached(string(k.Bucket), k.Key); !ok {
			buckets, ks = append(buckets, string(k.Bucket)), append(ks, k.Key)
		}
	}
	if len(ks) == 0 {
		return
	}
	rows, err := t.tx.Query(t.ctx, `SELECT kv.bucket, kv.key, kv.value FROM hale_kv kv
		JOIN unnest($1::text[], $2::bytea[]) AS want(bucket, key) ON kv.bucket = want.bucket AND kv.key = want.key`, buckets, ks)
	if err != nil {
		t.fail(err)
		return
	}
	for i := range ks {
		t.remember(buckets[i], ks[i], nil) // missing unless found below
	}
	var b string
	var k, v []byte
	_, err = pgx.ForEachRow(rows, []any{&b, &k, &v}, func() error {
		if v == nil {
			v = []byte{} // present but empty: not "missing"
		}
		t.remember(b, bytes.Clone(k), bytes.Clone(v))
		return nil
	})
	if err != nil {
		t.fail(err)
	}
}

// fail keeps the first error of the transaction.
func (t *kvTx) fail(err error) {
	if t.err == nil {
		t.err = fmt.Errorf("pgstore: %w", err)
	}
}

func (t *kvTx) Writable() bool { return t.writable }

func (t *kvTx) Bucket(name []byte) (kvstore.Bucket, error) {
	if len(name) == 0 {
		return nil, errors.New("pgstore: empty bucket name")
	}
	return &bucket{t: t, name: string(name)}, nil
}

func (t *kvTx) MoveState(name []byte, from, to string) {
	if from == to {
		return
	}
	for _, m := range []struct {
		state string
		n     int
	}{{from, -1}, {to, 1}} {
		if m.state == "" {
			continue
		}
		if _, err := t.tx.Exec(t.ctx, `INSERT INTO hale_kv_state_counts (bucket, state, n) VALUES ($1, $2, $3)
			ON CONFLICT (bucket, state) DO UPDATE SET n = hale_kv_state_counts.n + EXCLUDED.n`, string(name), m.state, m.n); err != nil {
			t.fail(err)
		}
	}
}

func (t *kvTx) StateCounts(name []byte) (map[string]int64, error) {
	rows, err := t.tx.Query(t.ctx, "SELECT state, n FROM hale_kv_state_counts WHERE bucket = $1", string(name))
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	counts := map[string]int64{}
	var state string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[state] = max(n, 0)
		return nil
	})
	return counts, err
}

// bucket is one kvstore bucket: the rows of hale_kv with its name.
type bucket struct {
	t    *kvTx
	name string
}

func (b *bucket) Get(key []byte) []byte {
	if v, ok := b.t.cached(b.name, key); ok {
		return v
	}
	var v []byte
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value FROM hale_kv WHERE bucket = $1 AND key = $2", b.name, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		b.t.remember(b.name, key, nil)
		return nil
	} else if err != nil {
		b.t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{} // present but empty: not "missing"
	}
	b.t.remember(b.name, key, v)
	return v
}

// write checks that the transaction may write and that key is valid, and counts the write.
func (b *bucket) write(key []byte) error {
	if !b.t.writable {
		return storage.ErrReadOnly
	}
	if len(key) == 0 || len(key) > kvstore.MaxKeySize {
		return fmt.Errorf("pgstore: key of %d bytes (must be 1 to %d)", len(key), kvstore.MaxKeySize)
	}
	if b.t.writes == nil {
		b.t.writes = map[string]int{}
	}
	b.t.writes[b.name]++
	b.t.record(b.name, key)
	return nil
}

func (b *bucket) Put(key, value []byte) error {
	if err := b.write(key); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	_, err := b.t.tx.Exec(b.t.ctx, `INSERT INTO hale_kv (bucket, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value`, b.name, key, value)
	if err != nil {
		b.t.fail(err)
		return fmt.Errorf("pgstore: put in %s: %w", b.name, err)
	}
	// The caller may reuse value's memory once Put returns, as bbolt allows until commit.
	b.t.remember(b.name, key, bytes.Clone(value))
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if err := b.write(key); err != nil {
		return err
	}
	if _, err := b.t.tx.Exec(b.t.ctx, "DELETE FROM hale_kv WHERE bucket = $1 AND key = $2", b.name, key); err != nil {
		b.t.fail(err)
		return fmt.Errorf("pgstore: delete in %s: %w", b.name, err)
	}
	b.t.remember(b.name, key, nil)
	return nil
}

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *bucket) Cursor() kvstore.Cursor { return &cursor{b: b} }

func (b *bucket) NextSequence() (uint64, error) {
	if !b.t.writable {
		return 0, storage.ErrReadOnly
	}
	var seq int64
	err := b.t.tx.QueryRow(b.t.ctx, `INSERT INTO hale_kv_sequences (bucket, seq) VALUES ($1, 1)
		ON CONFLICT (bucket) DO UPDATE SET seq = hale_kv_sequences.seq + 1 RETURNING seq`, b.name).Scan(&seq)
	if err != nil {
		b.t.fail(err)
		return 0, fmt.Errorf("pgstore: sequence of %s: %w", b.name, err)
	}
	return uint64(seq), nil
}

func (b *bucket) KeyN() (int, error) {
	var n int
	if err := b.t.tx.QueryRow(b.t.ctx, "SELECT count(*) FROM hale_kv WHERE bucket = $1", b.name).Scan(&n); err != nil {
		b.t.fail(err)
		return 0, fmt.Errorf("pgstore: count %s: %w", b.name, err)
	}
	return n, nil
}
