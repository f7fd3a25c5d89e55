package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/storage"
)

// openTestStore opens a store in a fresh temporary directory and closes it
// at the end of the test.
func openTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "data", "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// openTestBucket opens a fresh bucket in a fresh store.
func openTestBucket(t testing.TB) *Bucket {
	t.Helper()
	b, err := openTestStore(t).Bucket("test")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "hale.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if have := fi.Mode().Perm(); have != want {
			t.Errorf("%s mode = %v, want %v", p, have, want)
		}
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

func TestOpenTightensLooseFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopening a 0644 file = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestOpenEmptyPath(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Fatal("want error for empty path")
	}
}

func TestOpenNotABoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not bolt"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatal("want error opening a file that is not a bbolt database")
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hale.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// flock is per open file, so a second Open in this process contends
	// exactly like a second mdmserver would.
	start := time.Now()
	s2, err := Open(path, WithOpenTimeout(100*time.Millisecond))
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v is not ErrLocked", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("second Open took %s; the timeout is not applied", elapsed)
	}
}

func TestPing(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte(metaBucket)).Get([]byte("ping")) == nil {
			return errors.New("ping marker not written")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPingHonoursContextWhileWriterBusy(t *testing.T) {
	s := openTestStore(t)
	release := make(chan struct{})
	held := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- s.db.Update(func(*bbolt.Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Ping(ctx)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping with the writer held = %v, want DeadlineExceeded", err)
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
}

func TestBatchConcurrent(t *testing.T) {
	s := openTestStore(t)
	if err := s.createBuckets("posture"); err != nil {
		t.Fatal(err)
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.DB().Batch(func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("posture")).Put(fmt.Appendf(nil, "dev-%03d", i), []byte("report"))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var count int
	err := s.db.View(func(tx *bbolt.Tx) error {
		count = tx.Bucket([]byte("posture")).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Errorf("%d keys after %d acknowledged batch writes", count, n)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

func TestClosedStoreErrors(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Bucket("test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	txn, err := b.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	checks := map[string]error{
		"ping":   s.Ping(ctx),
		"check":  s.Check(),
		"batch":  s.Batch(context.Background(), func(storage.Tx) error { return nil }),
		"set":    b.Set(ctx, "k", []byte("v")),
		"delete": b.Delete(ctx, "k"),
		"commit": txn.Commit(ctx),
	}
	_, checks["get"] = b.Get(ctx, "k")
	_, checks["has"] = b.Has(ctx, "k")
	_, checks["bucket"] = s.Bucket("other")
	_, checks["begin"] = b.Begin()
	_, checks["begin-crud"] = b.BeginCRUDBucketTxn(ctx)
	_, checks["txn-get"] = txn.Get(ctx, "other")
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on closed store: error %v, want ErrClosed", name, err)
		}
	}
	if begun, err := b.BeginBucketTxn(ctx); begun != nil || err == nil {
		t.Errorf("BeginBucketTxn on closed store = %v, %v; want nil interface and error", begun, err)
	}
	for k := range b.Keys(ctx, nil) {
		t.Errorf("key %q listed from a closed store", k)
	}
}
