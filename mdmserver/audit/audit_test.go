package audit_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// The log's storage contract (appends, reads, checkpoints and proofs, units of work,
// concurrency, reopening) is tested on every backend by storagetest; these tests are of the
// log's own rules, on the bbolt backend.

// newLog returns a log on a new bbolt store, with the store and the test verifier.
func newLog(t testing.TB, opts ...audit.Option) (*audit.Log, *boltstore.Store, note.Verifier) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, v := audittest.NewLog(t, auditStore(st), opts...)
	return l, st, v
}

// auditStore narrows st to the log's units of work.
func auditStore(st storage.Store) audit.Store {
	return storage.Scope(st, func(tx storage.Tx) audit.Tx { return tx })
}

func TestListBoundsScan(t *testing.T) {
	ctx := context.Background()
	l, st, _ := newLog(t)
	maxScan := 1200
	audit.SetMaxScan(l, maxScan)
	// More entries than one call may scan, none matching: the page is empty but next moves on.
	n := maxScan + 50
	if err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range n {
			if _, err := audit.Append(ctx, tx.Audit(), audittest.Entry(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	page, next, err := l.List(ctx, audit.Filter{Actor: "nobody"}, 0, audit.MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 0 || next != int64(maxScan) {
		t.Fatalf("first call: %d entries, next %d; want 0, %d", len(page), next, maxScan)
	}
	page, next, err = l.List(ctx, audit.Filter{}, next, audit.MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 50 || next != 0 {
		t.Fatalf("second call: %d entries, next %d; want 50, 0", len(page), next)
	}
	page, _, err = l.List(ctx, audit.Filter{}, 0, audit.MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != audit.MaxListLimit {
		t.Fatalf("limit not capped: %d entries", len(page))
	}
}

func TestAppendValidation(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	long := strings.Repeat("x", audit.MaxFieldLen+1)
	manyDetails := map[string]string{}
	for i := range audit.MaxDetails + 1 {
		manyDetails[fmt.Sprint(i)] = "v"
	}
	bigDetails := map[string]string{}
	for i := range audit.MaxDetails {
		bigDetails[fmt.Sprint(i)] = strings.Repeat("\x01", audit.MaxFieldLen) // escapes to 6 bytes each
	}
	cases := map[string]func(*audit.Entry){
		"no actor":         func(e *audit.Entry) { e.Actor = "" },
		"no action":        func(e *audit.Entry) { e.Action = "" },
		"bad outcome":      func(e *audit.Entry) { e.Outcome = "maybe" },
		"no outcome":       func(e *audit.Entry) { e.Outcome = "" },
		"long target":      func(e *audit.Entry) { e.Target = long },
		"invalid utf8":     func(e *audit.Entry) { e.Actor = "a\xffb" },
		"too many details": func(e *audit.Entry) { e.Details = manyDetails },
		"empty detail key": func(e *audit.Entry) { e.Details = map[string]string{"": "x"} },
		"long detail":      func(e *audit.Entry) { e.Details = map[string]string{"k": long} },
		"encoded too big":  func(e *audit.Entry) { e.Details = bigDetails },
		"year 10000":       func(e *audit.Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := audittest.Entry(1)
			mutate(&e)
			if _, err := l.Append(ctx, e); !errors.Is(err, audit.ErrInvalidEntry) {
				t.Fatalf("Append error = %v, want ErrInvalidEntry", err)
			}
		})
	}
	if n, err := l.Size(ctx); err != nil || n != 0 {
		t.Fatalf("size after rejected appends = %d, %v", n, err)
	}
	// Caller-set Index and Prev are overwritten, a caller's time is kept (in UTC).
	e := audittest.Entry(0)
	e.Index, e.Prev = 99, tlog.Hash{1}
	e.Time = time.Date(2026, 5, 6, 7, 8, 9, 10, time.FixedZone("X", 3600))
	if idx, err := l.Append(ctx, e); err != nil || idx != 0 {
		t.Fatalf("Append = %d, %v", idx, err)
	}
	got, err := l.Get(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Index != 0 || got.Prev != (tlog.Hash{}) || !got.Time.Equal(e.Time) || got.Time.Location() != time.UTC {
		t.Fatalf("stored %+v", got)
	}
}

func TestNewRejects(t *testing.T) {
	_, st, _ := newLog(t)
	db := auditStore(st)
	s, _ := audittest.Keys(t)
	if _, err := audit.New(db, nil); err == nil {
		t.Error("nil signer accepted")
	}
	if _, err := audit.New(nil, s); err == nil {
		t.Error("nil store accepted")
	}
	for _, origin := range []string{"", "a\nb", " padded", strings.Repeat("o", 300), "tab\there"} {
		if _, err := audit.New(db, s, audit.WithOrigin(origin)); err == nil {
			t.Errorf("origin %q accepted", origin)
		}
	}
	_, otherV, _ := audit.GenerateKey("other")
	ov, _ := audit.NewVerifier(otherV)
	if _, err := audit.New(db, s, audit.WithVerifier(ov)); err == nil {
		t.Error("verifier of another key accepted")
	}
	if _, err := audit.NewSigner("PRIVATE+KEY+nonsense"); err == nil {
		t.Error("bad signer key accepted")
	}
	if _, err := audit.NewVerifier("nonsense"); err == nil {
		t.Error("bad verifier key accepted")
	}
}

func TestVerifierKey(t *testing.T) {
	skey, want := audittest.KeyPair(t)
	vkey, err := audit.VerifierKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	if vkey != want {
		t.Fatalf("VerifierKey = %q, want %q", vkey, want)
	}
	if _, err := audit.VerifierKey(want); err == nil {
		t.Fatal("a public key was taken for a private one")
	}
	if _, err := audit.VerifierKey(skey[:len(skey)-4] + "AAA="); err == nil {
		t.Fatal("a private key with the wrong key hash was accepted")
	}
}
