package certs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql"
	"go.etcd.io/bbolt"
)

// testDBs are the CA databases the tests opened, by directory: a CA opened again on a
// directory, as after a restart, finds what the one before it stored.
var testDBs sync.Map

// withTestDB gives Open the CA database of dir: smallstep's own bbolt driver on dir/ca.db, the
// file Hale kept it in before it moved into the server's store. It is closed when the test ends,
// after the CAs opened on it.
func withTestDB(t testing.TB, dir string) Option {
	t.Helper()
	if d, ok := testDBs.Load(dir); ok {
		return WithDB(d.(nosql.DB))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := nosql.New(nosql.BBoltDriver, filepath.Join(dir, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	testDBs.Store(dir, d)
	t.Cleanup(func() {
		testDBs.Delete(dir)
		d.Close()
	})
	return WithDB(d)
}

// The CA names no backend: without a database it does not start.
func TestOpenWithoutDB(t *testing.T) {
	_, err := Open(t.TempDir(), newMasterKey(t))
	if err == nil || !strings.Contains(err.Error(), "WithDB") {
		t.Fatalf("Open without a database = %v, want an error naming WithDB", err)
	}
}

// The tables Open creates are the ones smallstep's own db.New creates, so a smallstep upgrade
// that adds one fails here rather than at the first revocation.
func TestTablesAreSmallsteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.db")
	adb, err := db.New(&db.Config{Type: nosql.BBoltDriver, DataSource: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := adb.Shutdown(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var got []string
	bdb.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			got = append(got, string(name))
			return nil
		})
	})
	want := slices.Sorted(slices.Values(tables))
	if !slices.Equal(got, want) {
		t.Errorf("smallstep's tables are %q; certs creates %q", got, want)
	}
}

// Close leaves the database open for its owner, and a CA opened again on it finds what the
// first one stored.
func TestCloseLeavesDBOpen(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	a := openCA(t, dir, key)
	leaf := issueAgent(t, a, "dev-db").Leaf
	if err := a.Revoke(context.Background(), leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	d, _ := testDBs.Load(dir)
	if _, err := d.(nosql.DB).Get([]byte("revoked_x509_certs"), []byte(leaf.SerialNumber.String())); err != nil {
		t.Fatalf("the database after Close: %v", err)
	}
	b := openCA(t, dir, key)
	if revoked, err := b.IsRevoked(leaf.SerialNumber); err != nil || !revoked {
		t.Errorf("IsRevoked after reopening = %v, %v", revoked, err)
	}
}
