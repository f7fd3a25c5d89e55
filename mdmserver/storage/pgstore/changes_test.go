package pgstore_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// follower collects what a Follow applies.
type follower struct {
	mu       sync.Mutex
	keys     []string
	origins  []string
	resyncs  int
	caughtUp time.Time
	arrived  chan struct{}
}

func newFollower() *follower { return &follower{arrived: make(chan struct{}, 100)} }

func (f *follower) Follower() pgstore.Follower {
	return pgstore.Follower{
		Apply: func(_ context.Context, cs []pgstore.Change) error {
			f.mu.Lock()
			for _, c := range cs {
				f.keys = append(f.keys, c.Bucket+"/"+string(c.Key))
				f.origins = append(f.origins, c.Origin)
			}
			f.mu.Unlock()
			f.arrived <- struct{}{}
			return nil
		},
		Resync: func(context.Context) error {
			f.mu.Lock()
			f.resyncs++
			f.mu.Unlock()
			return nil
		},
		CaughtUp: func(at time.Time) {
			f.mu.Lock()
			f.caughtUp = at
			f.mu.Unlock()
		},
		Poll: 200 * time.Millisecond,
	}
}

// waitFor waits until the follower has seen n keys.
func (f *follower) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		keys := slices.Clone(f.keys)
		f.mu.Unlock()
		if len(keys) >= n {
			return keys
		}
		select {
		case <-f.arrived:
		case <-deadline:
			t.Fatalf("the follower saw %v, want %d keys", keys, n)
		}
	}
}

func putToken(t *testing.T, st *pgstore.Store, id string) {
	t.Helper()
	err := st.Update(t.Context(), func(tx storage.Tx) error {
		return tx.Tokens().Put(t.Context(), &tokens.Token{ID: id, Name: id, Role: tokens.RoleIT})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A write on one store reaches a follower of another on the same database at once (not at the
// next poll), in commit order; writes to buckets nobody follows and rolled-back writes never
// appear; the follower reports how fresh it is.
func TestChangeFeed(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	writer, err := pgstore.Open(t.Context(), dsn, pgstore.WithChangeFeed(kvstore.BucketTokens))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	reader := open(t, dsn)
	putToken(t, writer, "before") // before the follower's position: not applied
	from, err := reader.FeedPosition(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f := newFollower()
	fl := f.Follower()
	fl.Poll = time.Minute // only the notification can deliver in time
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- reader.Follow(ctx, from, fl) }()
	defer func() { cancel(); <-done }()

	started := time.Now()
	putToken(t, writer, "a")
	_ = writer.Update(t.Context(), func(tx storage.Tx) error {
		_ = tx.Tokens().Put(t.Context(), &tokens.Token{ID: "rolled-back"})
		return context.Canceled
	})
	putToken(t, writer, "b")
	// A write the feed does not follow (the idempotency bucket) is not recorded.
	err = writer.Update(t.Context(), func(tx storage.Tx) error {
		return tx.Idempotency().Put(t.Context(), idempotency.Key{Owner: "o", Route: "/r", Key: "k"}, []byte("{}"))
	})
	if err != nil {
		t.Fatal(err)
	}
	putToken(t, writer, "c")
	keys := f.waitFor(t, 3)
	if want := []string{"api_tokens/a", "api_tokens/b", "api_tokens/c"}; !slices.Equal(keys, want) {
		t.Fatalf("applied %v, want %v", keys, want)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("changes took %v: they waited for the poll, not the notification", took)
	}
	// Each change names the store that wrote it, so a server can skip its own.
	f.mu.Lock()
	origins := slices.Compact(slices.Clone(f.origins))
	f.mu.Unlock()
	if !slices.Equal(origins, []string{writer.Origin()}) || writer.Origin() == reader.Origin() || writer.Origin() == "" {
		t.Fatalf("changes came from %q; the writer is %q, the reader %q", origins, writer.Origin(), reader.Origin())
	}
	f.mu.Lock()
	fresh := f.caughtUp
	f.mu.Unlock()
	if fresh.Before(started) {
		t.Fatalf("caught up at %v, before the writes at %v", fresh, started)
	}
}

// A follower whose position was pruned away is told to reload, then follows from the feed's
// position.
func TestChangeFeedResync(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	writer, err := pgstore.Open(t.Context(), dsn, pgstore.WithChangeFeed(kvstore.BucketTokens))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	putToken(t, writer, "old")
	putToken(t, writer, "old2")
	if n, err := writer.PruneChanges(t.Context(), -time.Hour); err != nil || n != 2 {
		t.Fatalf("prune: %d %v", n, err)
	}
	f := newFollower()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	fl := f.Follower()
	resynced := make(chan struct{})
	fl.Resync = func(ctx context.Context) error {
		defer close(resynced)
		return f.Follower().Resync(ctx)
	}
	go func() { done <- writer.Follow(ctx, 0, fl) }()
	defer func() { cancel(); <-done }()
	// What was committed before the reload is in the reload; what comes after is applied.
	<-resynced
	putToken(t, writer, "new")
	if keys := f.waitFor(t, 1); !slices.Equal(keys, []string{"api_tokens/new"}) {
		t.Fatalf("applied %v after the resync", keys)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resyncs != 1 {
		t.Fatalf("%d resyncs, want 1", f.resyncs)
	}
}

// The follower's position comes from what was read, not from the slice Apply was given: an
// Apply that reuses the slice (filters it in place) does not make the feed read again from
// the start.
func TestChangeFeedApplyMayReuseTheSlice(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	writer, err := pgstore.Open(t.Context(), dsn, pgstore.WithChangeFeed(kvstore.BucketTokens))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	f := newFollower()
	fl := f.Follower()
	apply := fl.Apply
	fl.Apply = func(ctx context.Context, cs []pgstore.Change) error {
		err := apply(ctx, cs)
		clear(cs) // as slices.DeleteFunc leaves the tail
		return err
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- open(t, dsn).Follow(ctx, 0, fl) }()
	defer func() { cancel(); <-done }()
	putToken(t, writer, "a")
	f.waitFor(t, 1)
	putToken(t, writer, "b")
	f.waitFor(t, 2)
	time.Sleep(3 * fl.Poll) // polls that would read "a" again
	f.mu.Lock()
	keys := slices.Clone(f.keys)
	f.mu.Unlock()
	if want := []string{"api_tokens/a", "api_tokens/b"}; !slices.Equal(keys, want) {
		t.Fatalf("applied %v, want %v once each", keys, want)
	}
}
