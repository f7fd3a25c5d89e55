package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/storagetest"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// TestConformance runs the conformance suite on the repositories over memKV, a kvstore.Tx that
// holds nothing but kv.go's contract: no bbolt, no SQL. A repository that leans on what one
// backend happens to do (a write during ForEach, an empty or oversized key, a bucket outside
// kvstore.Buckets, a count nobody moved) fails here before it fails on the other backend.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, dir string) storage.Store { return openMem(dir) })
}

// memDisks are the "data directories" of memStore: what a closed store committed, by dir, so a
// reopen finds it as the suite's durability checks expect.
var memDisks = struct {
	sync.Mutex
	m map[string]*memData
}{m: map[string]*memData{}}

// memData is one committed state: every bucket, and the state counts of the counted buckets.
type memData struct {
	buckets map[string]*memBucket
	counts  map[string]map[string]int64
}

// memBucket is one bucket: sorted keys, their values, and the sequence.
type memBucket struct {
	keys []string
	vals map[string][]byte
	seq  uint64
}

func (b *memBucket) clone() *memBucket {
	return &memBucket{keys: slices.Clone(b.keys), vals: maps.Clone(b.vals), seq: b.seq}
}

func (d *memData) clone() *memData {
	c := &memData{buckets: make(map[string]*memBucket, len(d.buckets)), counts: map[string]map[string]int64{}}
	for n, b := range d.buckets {
		c.buckets[n] = b.clone()
	}
	for n, m := range d.counts {
		c.counts[n] = maps.Clone(m)
	}
	return c
}

// memStore is a storage.Store on memData: one writer at a time, each Update on a copy that
// replaces the committed state only when fn succeeds, so a failed unit of work leaves nothing.
type memStore struct {
	dir    string
	mu     sync.RWMutex
	data   *memData
	closed bool
}

func openMem(dir string) *memStore {
	memDisks.Lock()
	defer memDisks.Unlock()
	d := memDisks.m[dir]
	if d == nil {
		d = &memData{buckets: map[string]*memBucket{}, counts: map[string]map[string]int64{}}
		for _, n := range kvstore.Buckets {
			d.buckets[string(n)] = &memBucket{vals: map[string][]byte{}}
		}
		// Counted once at open, as a backend that keeps the counts in memory does.
		for _, n := range kvstore.CountedBuckets {
			c, err := kvstore.CountStates(&memTx{data: d}, n)
			if err != nil {
				panic(err)
			}
			d.counts[string(n)] = c
		}
		memDisks.m[dir] = d
	}
	return &memStore{dir: dir, data: d}
}

var errMemClosed = errors.New("memkv: store closed")

func (s *memStore) View(ctx context.Context, fn func(storage.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errMemClosed
	}
	return fn(kvstore.NewTx(&memTx{data: s.data}))
}

func (s *memStore) Update(ctx context.Context, fn func(storage.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errMemClosed
	}
	tx := &memTx{data: s.data.clone(), writable: true}
	if err := fn(kvstore.NewTx(tx)); err != nil {
		return err
	}
	for _, m := range tx.moves {
		c := tx.data.counts[m.bucket]
		if m.from != "" {
			c[m.from]--
		}
		if m.to != "" {
			c[m.to]++
		}
	}
	s.data = tx.data
	return nil
}

func (s *memStore) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	return s.Update(ctx, fn)
}

func (s *memStore) Ping(context.Context) error { return nil }

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		memDisks.Lock()
		memDisks.m[s.dir] = s.data
		memDisks.Unlock()
	}
	return nil
}

// memTx is a kvstore.Tx on memData.
type memTx struct {
	data     *memData
	writable bool
	moves    []struct{ bucket, from, to string }
}

func (t *memTx) Bucket(name []byte) (kvstore.Bucket, error) {
	b := t.data.buckets[string(name)]
	if b == nil {
		return nil, fmt.Errorf("memkv: bucket %q is missing", name)
	}
	return &memBucketTx{b: b, tx: t}, nil
}

func (t *memTx) Writable() bool { return t.writable }

func (t *memTx) MoveState(bucket []byte, from, to string) {
	if _, ok := t.data.counts[string(bucket)]; !ok {
		panic(fmt.Sprintf("memkv: MoveState on %q, not one of kvstore.CountedBuckets", bucket))
	}
	if from != to {
		t.moves = append(t.moves, struct{ bucket, from, to string }{string(bucket), from, to})
	}
}

func (t *memTx) StateCounts(bucket []byte) (map[string]int64, error) {
	c, ok := t.data.counts[string(bucket)]
	if !ok {
		return nil, fmt.Errorf("memkv: bucket %q has no state counts", bucket)
	}
	return maps.Clone(c), nil
}

// memBucketTx is one bucket within a transaction.
type memBucketTx struct {
	b  *memBucket
	tx *memTx
	// iterating is set during ForEach, whose fn must not write.
	iterating bool
}

func (b *memBucketTx) Get(key []byte) []byte { return b.b.vals[string(key)] }

// writable checks what kv.go asks of every write.
func (b *memBucketTx) writable(key []byte) error {
	switch {
	case !b.tx.writable:
		return fmt.Errorf("memkv: %w", storage.ErrReadOnly)
	case b.iterating:
		return errors.New("memkv: write during ForEach")
	case key != nil && (len(key) == 0 || len(key) > kvstore.MaxKeySize):
		return fmt.Errorf("memkv: key of %d bytes", len(key))
	}
	return nil
}

func (b *memBucketTx) Put(key, value []byte) error {
	if key == nil {
		key = []byte{}
	}
	if err := b.writable(key); err != nil {
		return err
	}
	k := string(key)
	if _, ok := b.b.vals[k]; !ok {
		i := sort.SearchStrings(b.b.keys, k)
		b.b.keys = slices.Insert(b.b.keys, i, k)
	}
	b.b.vals[k] = append([]byte{}, value...)
	return nil
}

func (b *memBucketTx) Delete(key []byte) error {
	if err := b.writable(nil); err != nil {
		return err
	}
	k := string(key)
	if _, ok := b.b.vals[k]; !ok {
		return nil
	}
	delete(b.b.vals, k)
	i := sort.SearchStrings(b.b.keys, k)
	b.b.keys = slices.Delete(b.b.keys, i, i+1)
	return nil
}

func (b *memBucketTx) ForEach(fn func(k, v []byte) error) error {
	b.iterating = true
	defer func() { b.iterating = false }()
	for _, k := range slices.Clone(b.b.keys) {
		if err := fn([]byte(k), b.b.vals[k]); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBucketTx) Cursor() kvstore.Cursor { return &memCursor{b: b.b} }

func (b *memBucketTx) NextSequence() (uint64, error) {
	if err := b.writable(nil); err != nil {
		return 0, err
	}
	b.b.seq++
	return b.b.seq, nil
}

func (b *memBucketTx) KeyN() (int, error) { return len(b.b.keys), nil }

// memCursor remembers the key it is on, not an index, so a write between two moves cannot make
// it skip or repeat a key.
type memCursor struct {
	b   *memBucket
	key []byte // nil before the first move and past either end
}

func (c *memCursor) at(i int) (key, value []byte) {
	if i < 0 || i >= len(c.b.keys) {
		c.key = nil
		return nil, nil
	}
	c.key = []byte(c.b.keys[i])
	return c.key, c.b.vals[c.b.keys[i]]
}

func (c *memCursor) First() (key, value []byte) { return c.at(0) }
func (c *memCursor) Last() (key, value []byte)  { return c.at(len(c.b.keys) - 1) }

func (c *memCursor) Seek(key []byte) (k, v []byte) {
	return c.at(sort.SearchStrings(c.b.keys, string(key)))
}

func (c *memCursor) Next() (key, value []byte) {
	if c.key == nil {
		return nil, nil
	}
	i := sort.SearchStrings(c.b.keys, string(c.key))
	if i < len(c.b.keys) && c.b.keys[i] == string(c.key) {
		i++
	}
	return c.at(i)
}

func (c *memCursor) Prev() (key, value []byte) {
	if c.key == nil {
		return nil, nil
	}
	return c.at(sort.SearchStrings(c.b.keys, string(c.key)) - 1)
}

// TestMemKV checks the test backend itself on what the suite relies on: order, seek, a cursor
// that survives a delete, and a failed update that leaves nothing.
func TestMemKV(t *testing.T) {
	s := openMem(t.TempDir())
	defer s.Close()
	ctx := context.Background()
	name := kvstore.BucketTokens
	tx := &memTx{data: s.data.clone(), writable: true}
	b, _ := tx.Bucket(name)
	for _, k := range []string{"b", "d", "a", "c"} {
		if err := b.Put([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		got = append(got, string(k))
		if string(k) == "b" {
			if err := b.Delete([]byte("b")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("walk with a delete: %v, want %v", got, want)
	}
	if k, _ := c.Seek([]byte("bb")); string(k) != "c" {
		t.Errorf("Seek(bb) = %q, want c", k)
	}
	if k, _ := c.Prev(); string(k) != "a" {
		t.Errorf("Prev after c = %q, want a", k)
	}
	if err := b.ForEach(func(k, _ []byte) error { return b.Put(k, nil) }); err == nil {
		t.Error("a write during ForEach was accepted")
	}
	if err := b.Put(bytes.Repeat([]byte("k"), kvstore.MaxKeySize+1), nil); err == nil {
		t.Error("an oversized key was accepted")
	}
	boom := errors.New("boom")
	if err := s.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Tokens().Put(ctx, &tokens.Token{ID: "t1"}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := len(s.data.buckets[string(name)].keys); n != 0 {
		t.Errorf("a failed update left %d keys", n)
	}
	ro := &memTx{data: s.data}
	rb, _ := ro.Bucket(name)
	if err := rb.Put([]byte("k"), nil); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("Put in a read-only transaction: %v, want ErrReadOnly", err)
	}
}
