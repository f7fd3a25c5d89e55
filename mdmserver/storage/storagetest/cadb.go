package storagetest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/smallstep/nosql"
	"github.com/smallstep/nosql/database"
)

// CADB is the certificate authority database's contract (smallstep/nosql's DB, which the
// embedded authority keeps its certificates, revocations and CRL in), run on databases newDB
// opens empty: every call smallstep's authority makes answers as smallstep's own bbolt driver
// does; nested tables work in every call; values returned are copies; and of concurrent
// compare-and-swaps of an absent key one wins (revoking a serial twice at once records one
// revocation).
func CADB(t *testing.T, newDB func(t *testing.T) database.DB) {
	t.Run("behaves as smallstep's driver", func(t *testing.T) {
		theirs, err := nosql.New(nosql.BBoltDriver, filepath.Join(t.TempDir(), "ca.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { theirs.Close() })
		want := caScript(t, theirs)
		got := caScript(t, newDB(t))
		if len(got) != len(want) {
			t.Fatalf("%d answers, smallstep's driver gave %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("step %d: %s\nsmallstep's driver: %s", i, got[i], want[i])
			}
		}
	})
	t.Run("nested tables and copies", func(t *testing.T) { caNested(t, newDB(t)) })
	t.Run("one of concurrent swaps wins", func(t *testing.T) { caConcurrentSwaps(t, newDB(t)) })
}

// caScript runs the calls smallstep's authority makes (and their edge cases) on d and returns
// what each answered, as text.
func caScript(t *testing.T, d database.DB) []string {
	t.Helper()
	var out []string
	note := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	errText := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case database.IsErrNotFound(err):
			return "not found"
		}
		return "error"
	}
	tbl, missing := []byte("x509_certs"), []byte("no_such_table")
	note("create %s", errText(d.CreateTable(tbl)))
	note("create again %s", errText(d.CreateTable(tbl)))
	_, err := d.Get(tbl, []byte("k"))
	note("get missing key %s", errText(err))
	_, err = d.Get(missing, []byte("k"))
	note("get missing table %s", errText(err))
	note("set missing table %s", errText(d.Set(missing, []byte("k"), []byte("v"))))
	note("set %s", errText(d.Set(tbl, []byte("b"), []byte("2"))))
	note("set %s", errText(d.Set(tbl, []byte("a"), []byte("1"))))
	v, err := d.Get(tbl, []byte("a"))
	note("get %q %s", v, errText(err))
	v, ok, err := d.CmpAndSwap(tbl, []byte("c"), nil, []byte("3"))
	note("swap absent %q %v %s", v, ok, errText(err))
	v, ok, err = d.CmpAndSwap(tbl, []byte("c"), nil, []byte("4"))
	note("swap absent again %q %v %s", v, ok, errText(err))
	v, ok, err = d.CmpAndSwap(tbl, []byte("c"), []byte("3"), []byte("5"))
	note("swap present %q %v %s", v, ok, errText(err))
	list, err := d.List(tbl)
	note("list %s", errText(err))
	for _, e := range list {
		note("  %s %q %q", e.Bucket, e.Key, e.Value)
	}
	_, err = d.List(missing)
	note("list missing table %s", errText(err))
	note("del %s", errText(d.Del(tbl, []byte("b"))))
	note("del absent %s", errText(d.Del(tbl, []byte("b"))))

	tx := new(database.Tx)
	tx.CreateTable([]byte("x509_certs_data"))
	tx.Set(tbl, []byte("d"), []byte("6"))
	tx.Set([]byte("x509_certs_data"), []byte("d"), []byte("{}"))
	tx.Get(tbl, []byte("a"))
	tx.Cas(tbl, []byte("e"), []byte("7"))
	tx.Del(tbl, []byte("a"))
	note("update %s", errText(d.Update(tx)))
	for _, op := range tx.Operations {
		note("  %s %q swapped=%v", op.Cmd, op.Result, op.Swapped)
	}
	// A failing operation leaves nothing of its transaction.
	tx = new(database.Tx)
	tx.Set(tbl, []byte("f"), []byte("8"))
	tx.Get(tbl, []byte("no such key"))
	note("failing update %s", errText(d.Update(tx)))
	_, err = d.Get(tbl, []byte("f"))
	note("write of the failed update %s", errText(err))
	v, err = d.Get([]byte("x509_certs_data"), []byte("d"))
	note("get %q %s", v, errText(err))

	note("delete table %s", errText(d.DeleteTable([]byte("x509_certs_data"))))
	note("delete missing table %s", errText(d.DeleteTable([]byte("x509_certs_data"))))
	return out
}

// caNested checks nested tables in every call and that Get returns a copy.
func caNested(t *testing.T, d database.DB) {
	nested := []byte("acme/orders")
	if err := d.CreateTable(nested); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(nested, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	tx := new(database.Tx)
	tx.Cas(nested, []byte("k2"), []byte("w"))
	if err := d.Update(tx); err != nil || !tx.Operations[0].Swapped {
		t.Fatalf("nested Update = %v, swapped %v", err, tx.Operations[0].Swapped)
	}
	v, err := d.Get(nested, []byte("k"))
	if err != nil || string(v) != "v" {
		t.Fatalf("nested Get = %q, %v", v, err)
	}
	v[0] = 'x'
	if again, _ := d.Get(nested, []byte("k")); string(again) != "v" {
		t.Error("Get returned the store's memory, not a copy")
	}
	if err := d.DeleteTable([]byte("acme")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(nested, []byte("k")); !database.IsErrNotFound(err) {
		t.Errorf("Get in a table nested in a deleted one: %v", err)
	}
	if err := d.Open("elsewhere"); err == nil {
		t.Error("Open of an open CA database succeeded")
	}
}

// caConcurrentSwaps checks that of concurrent swaps of an absent key exactly one wins.
func caConcurrentSwaps(t *testing.T, d database.DB) {
	tbl := []byte("revoked_x509_certs")
	if err := d.CreateTable(tbl); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	swaps := 0
	for i := range n {
		wg.Go(func() {
			_, ok, err := d.CmpAndSwap(tbl, []byte("42"), nil, []byte{byte(i)})
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				swaps++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if swaps != 1 {
		t.Errorf("%d of %d concurrent swaps of an absent key won, want 1", swaps, n)
	}
	list, err := d.List(tbl)
	if err != nil || len(list) != 1 || !bytes.Equal(list[0].Key, []byte("42")) {
		t.Errorf("List = %v, %v", list, err)
	}
}
