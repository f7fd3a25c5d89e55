package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// The audit log's contract is in storagetest; these tests edit the bbolt file under it, as
// someone with access to the disk could, and check that the log names what was changed.

// auditStore narrows st to the audit log's units of work.
func auditStore(st storage.Store) audit.Store {
	return storage.Scope(st, func(tx storage.Tx) audit.Tx { return tx })
}

// TestTamperedDatabase edits one byte of one stored entry in the bbolt file, as someone with
// access to the disk could, and checks both the server's self-check and an offline verification
// of an export against a checkpoint saved before the edit name that entry.
func TestTamperedDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hale.db")

	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l, v := audittest.NewLog(t, auditStore(st))
	audittest.AppendN(t, l, 0, 40)
	saved, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatalf("before tampering: %v", err)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(audittest.Export(t, l)), saved, v); err != nil {
		t.Fatalf("before tampering: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Raw bbolt, no audit package: flip one byte of entry 17's stored value.
	const victim = 17
	raw, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("audit_entries"))
		val := bytes.Clone(b.Get(indexKey(victim)))
		at := bytes.Index(val, []byte(`"actor":"tok_`)) + len(`"actor":"tok_`)
		if at < len(`"actor":"tok_`) {
			return fmt.Errorf("entry %d has no actor: %s", victim, val)
		}
		val[at] ^= 0x01 // tok_2 -> tok_3: still valid JSON, a different actor
		return b.Put(indexKey(victim), val)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, _ = audittest.NewLog(t, auditStore(st))
	if e, err := l.Get(ctx, victim); err != nil || e.Actor != "tok_3" {
		t.Fatalf("tampered entry reads %+v, %v; the test edited the wrong byte", e, err)
	}
	err = l.VerifyStored(ctx)
	audittest.WantVerifyError(t, err, audit.KindChanged, victim)
	t.Logf("VerifyStored: %v", err)

	_, err = audit.VerifyExport(bytes.NewReader(audittest.Export(t, l)), saved, v)
	audittest.WantVerifyError(t, err, audit.KindChanged, victim)
	t.Logf("audit.VerifyExport: %v", err)

	// The inclusion proof for the edited entry fails too; its neighbours' still verify.
	p, err := l.InclusionProof(ctx, victim, 40)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyInclusion(saved, v, p); err == nil {
		t.Fatal("inclusion proof of the tampered entry verified")
	}
	p, err = l.InclusionProof(ctx, victim+1, 40)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyInclusion(saved, v, p); err != nil {
		t.Fatalf("untouched entry: %v", err)
	}
}

// TestTamperedStorage covers the other edits someone could make to the buckets.
func TestTamperedStorage(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		edit  func(tx *bbolt.Tx) error
		kind  string
		index int64
	}{
		{"deleted entry", func(tx *bbolt.Tx) error {
			return tx.Bucket(kvstore.BucketAuditEntries).Delete(indexKey(5))
		}, audit.KindMissing, 5},
		{"size rolled back", func(tx *bbolt.Tx) error {
			return tx.Bucket(kvstore.BucketAuditMeta).Put(keyAuditSize, indexKey(8))
		}, audit.KindMismatch, 8},
		{"stored leaf hash", func(tx *bbolt.Tx) error {
			b := tx.Bucket(kvstore.BucketAuditHashes)
			h := bytes.Clone(b.Get(indexKey(tlog.StoredHashIndex(0, 3))))
			h[0] ^= 1
			return b.Put(indexKey(tlog.StoredHashIndex(0, 3)), h)
		}, audit.KindChanged, 3},
		{"stored interior hash", func(tx *bbolt.Tx) error {
			b := tx.Bucket(kvstore.BucketAuditHashes)
			idx := tlog.StoredHashIndex(1, 2) // written with entry 5
			h := bytes.Clone(b.Get(indexKey(idx)))
			h[0] ^= 1
			return b.Put(indexKey(idx), h)
		}, audit.KindMismatch, 5},
		{"entries swapped", func(tx *bbolt.Tx) error {
			b := tx.Bucket(kvstore.BucketAuditEntries)
			e2, e3 := bytes.Clone(b.Get(indexKey(2))), bytes.Clone(b.Get(indexKey(3)))
			if err := b.Put(indexKey(2), e3); err != nil {
				return err
			}
			return b.Put(indexKey(3), e2)
		}, audit.KindChanged, 2},
		{"checkpoint replaced", func(tx *bbolt.Tx) error {
			b := tx.Bucket(kvstore.BucketAuditCheckpoints)
			cp := bytes.Clone(b.Get(indexKey(10)))
			return b.Put(indexKey(10), bytes.Replace(cp, []byte("\n10\n"), []byte("\n11\n"), 1))
		}, audit.KindMismatch, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openTestStore(t)
			l, _ := audittest.NewLog(t, auditStore(st))
			audittest.AppendN(t, l, 0, 10)
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if err := st.DB().Update(tc.edit); err != nil {
				t.Fatal(err)
			}
			audittest.WantVerifyError(t, l.VerifyStored(ctx), tc.kind, tc.index)
		})
	}
}

// The audit log's keys as kvstore writes them: written out here, not imported, so that a change
// of the on-disk layout fails these tests.
var keyAuditSize = []byte("size")

// indexKey is an index (or tree size) as the audit buckets key it: 8 big-endian bytes.
func indexKey(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }
