package pgstore

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// pairs returns a next function over kv (key, value, key, value, ...), as Importer.Bucket reads.
func pairs(kv ...string) func() ([]byte, []byte, error) {
	return func() ([]byte, []byte, error) {
		if len(kv) == 0 {
			return nil, nil, nil
		}
		k, v := kv[0], kv[1]
		kv = kv[2:]
		return []byte(k), []byte(v), nil
	}
}

// inTx runs fn on a read-write kvTx of its own, committed.
func inTx(t *testing.T, s *Store, fn func(*kvTx)) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	kt := &kvTx{ctx: ctx, tx: tx, writable: true}
	fn(kt)
	if kt.err != nil {
		t.Fatal(kt.err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestImport: buckets arrive byte for byte with their sequences, the state counts are counted
// from the records, CA tables nest, and the database is refused once it holds anything.
func TestImport(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckEmpty(ctx); err != nil {
		t.Fatalf("a new database: %v", err)
	}
	// A failing import writes nothing.
	boom := errors.New("boom")
	err = s.Import(ctx, func(im *Importer) error {
		if _, err := im.Bucket([]byte("signing_keys"), 7, pairs("k", "v")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || s.CheckEmpty(ctx) != nil {
		t.Fatalf("a failed import: %v, then %v", err, s.CheckEmpty(ctx))
	}

	err = s.Import(ctx, func(im *Importer) error {
		if n, err := im.Bucket(kvstore.BucketCommandRecords, 41, pairs(
			"\x00\x01", `{"state":"queued"}`, "\x00\x02", `{"state":"acknowledged"}`, "\x00\x03", `{"state":"queued"}`)); err != nil || n != 3 {
			return errors.Join(err, errors.New("wrong count"))
		}
		if _, err := im.Bucket(kvstore.BucketAgentCommands, 0, pairs()); err != nil {
			return err
		}
		if _, err := im.Bucket([]byte("api_tokens"), 0, pairs("empty", "")); err != nil {
			return err
		}
		for _, tbl := range []string{"x509_certs", "x509_certs/data"} {
			if err := im.CATable([]byte(tbl)); err != nil {
				return err
			}
		}
		return im.CAEntry([]byte("x509_certs/data"), []byte{0xff, 0}, []byte("der"))
	})
	if err != nil {
		t.Fatal(err)
	}
	inTx(t, s, func(kt *kvTx) {
		b, _ := kt.Bucket(kvstore.BucketCommandRecords)
		if seq, err := b.NextSequence(); err != nil || seq != 42 {
			t.Errorf("the sequence after the import: %d %v, want 42", seq, err)
		}
		if v := b.Get([]byte("\x00\x02")); string(v) != `{"state":"acknowledged"}` {
			t.Errorf("value %q", v)
		}
		counts, err := kt.StateCounts(kvstore.BucketCommandRecords)
		if want := map[string]int64{"queued": 2, "acknowledged": 1}; err != nil || !maps.Equal(counts, want) {
			t.Errorf("state counts %v %v, want %v", counts, err, want)
		}
		tok, _ := kt.Bucket([]byte("api_tokens"))
		if v := tok.Get([]byte("empty")); v == nil || len(v) != 0 {
			t.Errorf("an empty value came back as %v", v)
		}
	})
	if v, err := s.CADB().Get([]byte("x509_certs/data"), []byte{0xff, 0}); err != nil || string(v) != "der" {
		t.Errorf("CA entry: %q %v", v, err)
	}
	counts, err := s.BucketCounts(ctx)
	if err != nil || counts["commands"] != 3 || counts["api_tokens"] != 1 {
		t.Errorf("bucket counts %v %v", counts, err)
	}
	if tables, entries, err := s.CACount(ctx); err != nil || tables != 2 || entries != 1 {
		t.Errorf("CA count: %d %d %v", tables, entries, err)
	}

	err = s.Import(ctx, func(*Importer) error { t.Error("an import ran on a full database"); return nil })
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "hale_kv,") || !strings.Contains(err.Error(), "hale_ca") {
		t.Fatalf("import into a full database: %v", err)
	}
	// nanomdm's tables count too.
	s2, err := Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.pool.Exec(ctx, `INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token) VALUES ('t', '-----BEGIN CERTIFICATE-----', '-----', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s2.CheckEmpty(ctx); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "push_certs") {
		t.Fatalf("a database with a push certificate: %v", err)
	}
}
