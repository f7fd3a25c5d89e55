package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// testAudit is the contract of audit.Repository, and the audit log's rules over it: appends,
// reads and exports, checkpoints and proofs, the entry committing with the change it records,
// concurrency and reopening.
func testAudit(t *testing.T, open Opener) {
	t.Run("repository", func(t *testing.T) { auditRepository(t, open) })
	t.Run("append get list export", func(t *testing.T) { auditAppendGetListExport(t, open) })
	t.Run("entry commits with the change", func(t *testing.T) { auditCommitsWithTheChange(t, open) })
	t.Run("checkpoints and proofs", func(t *testing.T) { auditCheckpointsAndProofs(t, open) })
	t.Run("concurrent appends", func(t *testing.T) { auditConcurrentAppend(t, open) })
	t.Run("run", func(t *testing.T) { auditRun(t, open) })
	t.Run("empty log", func(t *testing.T) { auditEmptyLog(t, open) })
	t.Run("reopen", func(t *testing.T) { auditReopen(t, open) })
	t.Run("delivery cursors", func(t *testing.T) { auditDeliveryCursors(t, open) })
}

// auditStore narrows st to the audit log's units of work, as the server does.
func auditStore(st storage.Store) audit.Store {
	return storage.Scope(st, func(tx storage.Tx) audit.Tx { return tx })
}

// auditLog is the test log kept in st.
func auditLog(t testing.TB, st storage.Store, opts ...audit.Option) (*audit.Log, note.Verifier) {
	t.Helper()
	return audittest.NewLog(t, auditStore(st), opts...)
}

func auditCommitsWithTheChange(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	l, _ := auditLog(t, st)
	audittest.AppendN(t, l, 0, 3)

	// The change is another repository's write: a token revoked, say.
	tok := tokens.Token{ID: "00000000000000a1", Name: "secops", Role: tokens.RoleSecurity, Person: "dana", Hash: strings.Repeat("0", 64)}
	change := func(tx storage.Tx) error { return tx.Tokens().Put(ctx, &tok) }

	// A failed change rolls back its audit entry too.
	errChange := errors.New("change failed")
	err := st.Update(ctx, func(tx storage.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx.Audit(), audittest.Entry(3)); err != nil {
			return err
		}
		return errChange
	})
	if !errors.Is(err, errChange) {
		t.Fatal(err)
	}
	if n, _ := l.Size(ctx); n != 3 {
		t.Fatalf("size after rollback = %d, want 3", n)
	}
	_ = st.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Tokens().Get(ctx, tok.ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("the failed change was kept: %v", err)
		}
		return nil
	})

	// A committed change has its entry, with the next index.
	err = st.Update(ctx, func(tx storage.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		for i := 3; i < 6; i++ {
			idx, err := audit.Append(ctx, tx.Audit(), audittest.Entry(i))
			if err != nil {
				return err
			}
			if idx != int64(i) {
				return fmt.Errorf("audit.Append gave index %d, want %d", idx, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	_ = st.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Tokens().Get(ctx, tok.ID); err != nil {
			t.Errorf("the committed change is missing: %v", err)
		}
		return nil
	})

	// Misuse is refused, not silently accepted.
	if err := st.View(ctx, func(tx storage.Tx) error {
		_, err := audit.Append(ctx, tx.Audit(), audittest.Entry(9))
		return err
	}); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("Append in a read-only transaction: %v, want ErrReadOnly", err)
	}
}

// auditRepository is the repository's own contract, under the log's rules: what Put and
// PutCheckpoint write reads back, copies are the caller's, nothing is overwritten, and a View
// refuses writes.
func auditRepository(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	err := st.View(ctx, func(tx storage.Tx) error {
		r := tx.Audit()
		if n, err := r.Size(ctx); err != nil || n != 0 {
			t.Errorf("Size of a new log = %d, %v", n, err)
		}
		for _, i := range []int64{0, -1} {
			if _, err := r.Entry(ctx, i); !errors.Is(err, audit.ErrNotFound) {
				t.Errorf("Entry(%d) of a new log: %v, want ErrNotFound", i, err)
			}
		}
		if _, err := r.Hashes(ctx, []int64{0}); !errors.Is(err, audit.ErrCorrupt) {
			t.Errorf("Hashes of a new log: %v, want ErrCorrupt", err)
		}
		if _, err := r.Checkpoint(ctx, 0); !errors.Is(err, audit.ErrNoCheckpoint) {
			t.Errorf("Checkpoint(0) of a new log: %v, want ErrNoCheckpoint", err)
		}
		if _, err := r.LatestCheckpoint(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
			t.Errorf("LatestCheckpoint of a new log: %v, want ErrNoCheckpoint", err)
		}
		if e, h, err := r.Extent(ctx); err != nil || e != 0 || h != 0 {
			t.Errorf("Extent of a new log = %d, %d, %v", e, h, err)
		}
		if err := r.Put(ctx, 0, []byte("x"), []tlog.Hash{{1}}); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want ErrReadOnly", err)
		}
		if err := r.PutCheckpoint(ctx, 0, []byte("x")); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutCheckpoint in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Three entries with their real tree hashes, and checkpoints stored out of order.
	datas := [][]byte{[]byte(`{"n":0}`), []byte(`{"n":1}`), []byte(`{"n":2}`)}
	var hashCount int64
	err = st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Audit()
		hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return r.Hashes(ctx, idx) })
		for i, data := range datas {
			hs, err := tlog.StoredHashes(int64(i), data, hr)
			if err != nil {
				return err
			}
			if err := r.Put(ctx, int64(i), data, hs); err != nil {
				return err
			}
			hashCount = tlog.StoredHashIndex(0, int64(i)) + int64(len(hs))
		}
		for _, n := range []int64{3, 1, 2} {
			if err := r.PutCheckpoint(ctx, n, fmt.Appendf(nil, "checkpoint %d", n)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Audit()
		if n, err := r.Size(ctx); err != nil || n != 3 {
			t.Errorf("Size = %d, %v; want 3", n, err)
		}
		got, err := r.Entry(ctx, 1)
		if err != nil || !bytes.Equal(got, datas[1]) {
			t.Errorf("Entry(1) = %q, %v", got, err)
		}
		got[0] = 'X' // the caller's copy
		if again, _ := r.Entry(ctx, 1); !bytes.Equal(again, datas[1]) {
			t.Errorf("changing a returned entry changed the stored one: %q", again)
		}
		want, err := tlog.TreeHash(3, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return r.Hashes(ctx, idx) }))
		if err != nil {
			t.Errorf("TreeHash over the stored hashes: %v", err)
		}
		if th, err := tlog.TreeHash(3, memHashes(t, datas)); err != nil || th != want {
			t.Errorf("stored tree hash %v, want %v (%v)", want, th, err)
		}
		if e, h, err := r.Extent(ctx); err != nil || e != 3 || h != hashCount {
			t.Errorf("Extent = %d, %d, %v; want 3, %d", e, h, err, hashCount)
		}
		if cp, err := r.Checkpoint(ctx, 2); err != nil || string(cp) != "checkpoint 2" {
			t.Errorf("Checkpoint(2) = %q, %v", cp, err)
		}
		if cp, err := r.LatestCheckpoint(ctx); err != nil || string(cp) != "checkpoint 3" {
			t.Errorf("LatestCheckpoint = %q, %v", cp, err)
		}
		var sizes []int64
		err = r.Checkpoints(ctx, func(n int64, signed []byte) error {
			if string(signed) != fmt.Sprintf("checkpoint %d", n) {
				t.Errorf("checkpoint %d is %q", n, signed)
			}
			sizes = append(sizes, n)
			return nil
		})
		if err != nil || fmt.Sprint(sizes) != "[1 2 3]" {
			t.Errorf("Checkpoints in order %v, %v; want [1 2 3]", sizes, err)
		}
		stop := errors.New("stop")
		if err := r.Checkpoints(ctx, func(int64, []byte) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("Checkpoints did not return fn's error: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// An index already stored is never overwritten, and a failed unit of work leaves nothing.
	err = st.Update(ctx, func(tx storage.Tx) error {
		return tx.Audit().Put(ctx, 1, []byte("other"), []tlog.Hash{{2}})
	})
	if !errors.Is(err, audit.ErrCorrupt) {
		t.Errorf("Put over entry 1: %v, want ErrCorrupt", err)
	}
	failed := errors.New("unit failed")
	err = st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Audit().Put(ctx, 3, []byte("three"), []tlog.Hash{{3}}); err != nil {
			return err
		}
		if err := tx.Audit().PutCheckpoint(ctx, 4, []byte("checkpoint 4")); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Audit()
		if n, err := r.Size(ctx); err != nil || n != 3 {
			t.Errorf("Size after a failed unit = %d, %v; want 3", n, err)
		}
		if got, err := r.Entry(ctx, 1); err != nil || !bytes.Equal(got, datas[1]) {
			t.Errorf("Entry(1) after a refused overwrite = %q, %v", got, err)
		}
		if _, err := r.Entry(ctx, 3); !errors.Is(err, audit.ErrNotFound) {
			t.Errorf("Entry(3) of a failed unit: %v, want ErrNotFound", err)
		}
		if _, err := r.Checkpoint(ctx, 4); !errors.Is(err, audit.ErrNoCheckpoint) {
			t.Errorf("checkpoint of a failed unit: %v, want ErrNoCheckpoint", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// memHashes is the tree of datas computed in memory, to compare a backend's stored hashes with.
func memHashes(t *testing.T, datas [][]byte) tlog.HashReader {
	t.Helper()
	stored := map[int64]tlog.Hash{}
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, data := range datas {
		hs, err := tlog.StoredHashes(int64(i), data, r)
		if err != nil {
			t.Fatal(err)
		}
		for j, h := range hs {
			stored[tlog.StoredHashIndex(0, int64(i))+int64(j)] = h
		}
	}
	return r
}

// auditReopen: what committed is there after a reopen, checkpoints and proofs included, and
// the log goes on at the next index.
func auditReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	first := st
	t.Cleanup(func() { _ = first.Close() }) // should the test end before Reopen closes it
	l, v := auditLog(t, st)
	audittest.AppendN(t, l, 0, 5)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := audittest.Export(t, l)

	st = Reopen(t, open, st, dir)
	l, _ = auditLog(t, st)
	if n, err := l.Size(ctx); err != nil || n != 5 {
		t.Fatalf("size after reopen = %d, %v; want 5", n, err)
	}
	if latest, err := l.Latest(ctx); err != nil || !bytes.Equal(latest, cp) {
		t.Fatalf("latest checkpoint after reopen differs: %v", err)
	}
	if after := audittest.Export(t, l); !bytes.Equal(after, before) {
		t.Fatalf("export after reopen differs:\n%s\nwant\n%s", after, before)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	audittest.AppendN(t, l, 5, 2)
	if _, err := audit.VerifyExport(bytes.NewReader(audittest.Export(t, l)), cp, v); err != nil {
		t.Fatal(err)
	}
	p, err := l.ConsistencyProof(ctx, 5, 7)
	if err != nil {
		t.Fatal(err)
	}
	cp7, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(cp, cp7, v, p); err != nil {
		t.Fatal(err)
	}
}
