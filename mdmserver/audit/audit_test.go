package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testKeys is one key pair for the whole package's tests: key generation is not under test.
var testKeys = sync.OnceValues(func() ([2]string, error) {
	skey, vkey, err := GenerateKey("hale-audit-test")
	return [2]string{skey, vkey}, err
})

func keys(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	k, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(k[0])
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(k[1])
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func openDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testClock ticks one second per call from a fixed start.
func testClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func newLog(t testing.TB, path string, opts ...Option) (*Log, *bbolt.DB, note.Verifier) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "hale.db")
	}
	db := openDB(t, path)
	t.Cleanup(func() { db.Close() })
	s, v := keys(t)
	opts = append([]Option{WithClock(testClock()), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	l, err := New(db, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l, db, v
}

func entry(i int) Entry {
	actions := []string{"device.lock", "device.wipe", "policy.put", "token.create"}
	return Entry{
		Actor:     fmt.Sprintf("tok_%d", i%3),
		Role:      "security",
		Source:    "192.0.2.7:51234",
		RequestID: fmt.Sprintf("req-%d", i),
		Action:    actions[i%len(actions)],
		Target:    fmt.Sprintf("dev-%d", i%5),
		Outcome:   OutcomeOK,
		Details:   map[string]string{"command_id": fmt.Sprintf("cmd-%d", i)},
	}
}

func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		idx, err := l.Append(context.Background(), entry(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != int64(i) {
			t.Fatalf("Append returned index %d, want %d", idx, i)
		}
	}
}

func export(t testing.TB, l *Log) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wantVerifyError fails t unless err is a *VerifyError of kind about entry index.
func wantVerifyError(t *testing.T, err error, kind string, index int64) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("got error %v, want a *VerifyError (%s, entry %d)", err, kind, index)
	}
	if ve.Kind != kind || ve.Index != index {
		t.Fatalf("got %q (kind %q, entry %d), want kind %q, entry %d", err, ve.Kind, ve.Index, kind, index)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("entry %d", index)) {
		t.Fatalf("message %q does not name entry %d", err, index)
	}
}

func TestAppendGetListExport(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t, "")
	appendN(t, l, 0, 20)

	e, err := l.Get(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := entry(7)
	if e.Index != 7 || e.Actor != want.Actor || e.Action != want.Action || e.Details["command_id"] != "cmd-7" {
		t.Fatalf("Get(7) = %+v", e)
	}
	if e.Time.Location() != time.UTC || e.Time.IsZero() {
		t.Fatalf("time %v not set in UTC", e.Time)
	}
	if _, err := l.Get(ctx, 20); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(20) error = %v, want ErrNotFound", err)
	}
	if _, err := l.Get(ctx, -1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(-1) error = %v, want ErrNotFound", err)
	}

	// Paging through everything.
	var all []Entry
	for start := int64(0); ; {
		page, next, err := l.List(ctx, Filter{}, start, 6)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == 0 {
			break
		}
		start = next
	}
	if len(all) != 20 {
		t.Fatalf("paged %d entries, want 20", len(all))
	}
	for i, e := range all {
		if e.Index != int64(i) {
			t.Fatalf("entry %d has index %d", i, e.Index)
		}
	}

	filters := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"actor", Filter{Actor: "tok_1"}, []int64{1, 4, 7, 10, 13, 16, 19}},
		{"action", Filter{Action: "device.wipe"}, []int64{1, 5, 9, 13, 17}},
		{"action prefix", Filter{Action: "device.*", Target: "dev-0"}, []int64{0, 5}},
		{"target", Filter{Target: "dev-3"}, []int64{3, 8, 13, 18}},
		{"since until", Filter{Since: all[4].Time, Until: all[7].Time}, []int64{4, 5, 6}},
		{"nothing", Filter{Actor: "nobody"}, nil},
	}
	for _, tc := range filters {
		t.Run(tc.name, func(t *testing.T) {
			page, next, err := l.List(ctx, tc.f, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if next != 0 {
				t.Fatalf("next = %d, want 0", next)
			}
			var got []int64
			for _, e := range page {
				got = append(got, e.Index)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("List = %v, want %v", got, tc.want)
			}
			var buf bytes.Buffer
			if err := l.Export(ctx, &buf, tc.f); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tc.want) {
				t.Fatalf("Export wrote %d lines, want %d", len(lines), len(tc.want))
			}
			for i, line := range lines {
				if !strings.HasPrefix(line, fmt.Sprintf(`{"index":%d,`, tc.want[i])) {
					t.Fatalf("export line %d = %s", i, line)
				}
			}
		})
	}

	// The export is the stored bytes, exactly: re-encoding an entry is never needed.
	lines := bytes.Split(bytes.TrimSuffix(export(t, l), []byte("\n")), []byte("\n"))
	if len(lines) != 20 {
		t.Fatalf("export has %d lines", len(lines))
	}
	if err := l.db.View(func(tx *bbolt.Tx) error {
		for i, line := range lines {
			if !bytes.Equal(tx.Bucket(bucketEntries).Get(key(int64(i))), line) {
				return fmt.Errorf("export line %d differs from the stored entry", i)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestListBoundsScan(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t, "")
	l.maxScan = 1200
	// More entries than one call may scan, none matching: the page is empty but next moves on.
	n := l.maxScan + 50
	if err := db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			if _, err := l.AppendTx(tx, entry(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	page, next, err := l.List(ctx, Filter{Actor: "nobody"}, 0, MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 0 || next != int64(l.maxScan) {
		t.Fatalf("first call: %d entries, next %d; want 0, %d", len(page), next, l.maxScan)
	}
	page, next, err = l.List(ctx, Filter{}, next, MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 50 || next != 0 {
		t.Fatalf("second call: %d entries, next %d; want 50, 0", len(page), next)
	}
	page, _, err = l.List(ctx, Filter{}, 0, MaxListLimit*10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != MaxListLimit {
		t.Fatalf("limit not capped: %d entries", len(page))
	}
}

func TestAppendValidation(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t, "")
	long := strings.Repeat("x", MaxFieldLen+1)
	manyDetails := map[string]string{}
	for i := range MaxDetails + 1 {
		manyDetails[fmt.Sprint(i)] = "v"
	}
	bigDetails := map[string]string{}
	for i := range MaxDetails {
		bigDetails[fmt.Sprint(i)] = strings.Repeat("\x01", MaxFieldLen) // escapes to 6 bytes each
	}
	cases := map[string]func(*Entry){
		"no actor":         func(e *Entry) { e.Actor = "" },
		"no action":        func(e *Entry) { e.Action = "" },
		"bad outcome":      func(e *Entry) { e.Outcome = "maybe" },
		"no outcome":       func(e *Entry) { e.Outcome = "" },
		"long target":      func(e *Entry) { e.Target = long },
		"invalid utf8":     func(e *Entry) { e.Actor = "a\xffb" },
		"too many details": func(e *Entry) { e.Details = manyDetails },
		"empty detail key": func(e *Entry) { e.Details = map[string]string{"": "x"} },
		"long detail":      func(e *Entry) { e.Details = map[string]string{"k": long} },
		"encoded too big":  func(e *Entry) { e.Details = bigDetails },
		"year 10000":       func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := entry(1)
			mutate(&e)
			if _, err := l.Append(ctx, e); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Append error = %v, want ErrInvalidEntry", err)
			}
		})
	}
	if n, err := l.Size(ctx); err != nil || n != 0 {
		t.Fatalf("size after rejected appends = %d, %v", n, err)
	}
	// Caller-set Index and Prev are overwritten, a caller's time is kept (in UTC).
	e := entry(0)
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

func TestAppendTxCommitsWithTheChange(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t, "")
	appendN(t, l, 0, 3)

	// A failed change rolls back its audit entry too.
	errChange := errors.New("change failed")
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("devices"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("dev-1"), []byte("wiped")); err != nil {
			return err
		}
		if _, err := l.AppendTx(tx, entry(3)); err != nil {
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

	// A committed change has its entry, with the next index.
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("devices"))
		if err != nil {
			return err
		}
		if err := b.Put([]byte("dev-1"), []byte("wiped")); err != nil {
			return err
		}
		for i := 3; i < 6; i++ {
			idx, err := l.AppendTx(tx, entry(i))
			if err != nil {
				return err
			}
			if idx != int64(i) {
				return fmt.Errorf("AppendTx index %d, want %d", idx, i)
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

	// Misuse is refused, not silently accepted.
	if err := db.View(func(tx *bbolt.Tx) error {
		_, err := l.AppendTx(tx, entry(9))
		return err
	}); err == nil {
		t.Fatal("AppendTx accepted a read-only transaction")
	}
	other := openDB(t, filepath.Join(t.TempDir(), "other.db"))
	defer other.Close()
	if err := other.Update(func(tx *bbolt.Tx) error {
		_, err := l.AppendTx(tx, entry(9))
		return err
	}); err == nil {
		t.Fatal("AppendTx accepted another database's transaction")
	}
}

func TestCheckpointsAndProofs(t *testing.T) {
	ctx := context.Background()
	l, _, v := newLog(t, "", WithOrigin("example.org/hale audit"))
	if _, err := l.Latest(ctx); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Latest on a new log: %v, want ErrNoCheckpoint", err)
	}
	appendN(t, l, 0, 5)
	oldCP, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(oldCP, []byte("example.org/hale audit\n5\n")) {
		t.Fatalf("checkpoint text:\n%s", oldCP)
	}
	again, err := l.Checkpoint(ctx)
	if err != nil || !bytes.Equal(again, oldCP) {
		t.Fatalf("second checkpoint at the same size differs: %v", err)
	}
	appendN(t, l, 5, 8)
	newCP, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := l.Latest(ctx)
	if err != nil || !bytes.Equal(latest, newCP) {
		t.Fatalf("Latest is not the newest checkpoint: %v", err)
	}
	cp, err := OpenCheckpoint(newCP, v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.N != 13 || cp.Origin != "example.org/hale audit" {
		t.Fatalf("checkpoint = %+v", cp)
	}

	t.Run("inclusion", func(t *testing.T) {
		for i := int64(0); i < 13; i++ {
			p, err := l.InclusionProof(ctx, i, 0) // 0: the latest checkpoint's size
			if err != nil {
				t.Fatal(err)
			}
			e, err := VerifyInclusion(newCP, v, p)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if e.Index != i {
				t.Fatalf("proof returned entry %d, want %d", e.Index, i)
			}
		}
		p, err := l.InclusionProof(ctx, 2, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyInclusion(oldCP, v, p); err != nil {
			t.Fatalf("proof in the old tree: %v", err)
		}
		if _, err := VerifyInclusion(newCP, v, p); err == nil {
			t.Fatal("proof for a tree of 5 accepted against a checkpoint of 13")
		}

		p, err = l.InclusionProof(ctx, 6, 13)
		if err != nil {
			t.Fatal(err)
		}
		tampered := map[string]func(p *InclusionProof){
			"entry byte": func(p *InclusionProof) {
				p.Entry = bytes.Replace(p.Entry, []byte("tok_0"), []byte("tok_9"), 1)
			},
			"proof hash": func(p *InclusionProof) { p.Proof[0][3] ^= 1 },
			"other index": func(p *InclusionProof) {
				p.Index = 7
			},
			"short proof": func(p *InclusionProof) { p.Proof = p.Proof[1:] },
			"no proof":    func(p *InclusionProof) { p.Proof = nil },
		}
		for name, mutate := range tampered {
			q := *p
			q.Entry = bytes.Clone(p.Entry)
			q.Proof = append(tlog.RecordProof(nil), p.Proof...)
			mutate(&q)
			if _, err := VerifyInclusion(newCP, v, &q); err == nil {
				t.Errorf("%s: tampered proof verified", name)
			}
		}
		if _, err := l.InclusionProof(ctx, 13, 13); err == nil {
			t.Error("proof for an entry past the tree")
		}
		if _, err := l.InclusionProof(ctx, 1, 14); err == nil {
			t.Error("proof for a tree larger than the log")
		}
	})

	t.Run("consistency", func(t *testing.T) {
		p, err := l.ConsistencyProof(ctx, 5, 13)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(oldCP, newCP, v, p); err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(newCP, oldCP, v, p); err == nil {
			t.Fatal("a shrinking log verified")
		}
		bad := append(tlog.TreeProof(nil), p...)
		bad[0][0] ^= 1
		if err := VerifyConsistency(oldCP, newCP, v, bad); err == nil {
			t.Fatal("tampered consistency proof verified")
		}
		if err := VerifyConsistency(oldCP, newCP, v, nil); err == nil {
			t.Fatal("empty consistency proof verified")
		}
		if err := VerifyConsistency(newCP, newCP, v, nil); err != nil {
			t.Fatalf("a checkpoint is consistent with itself: %v", err)
		}
		if _, err := l.ConsistencyProof(ctx, 6, 5); err == nil {
			t.Fatal("proof from a larger to a smaller tree")
		}
		if _, err := l.ConsistencyProof(ctx, 5, 14); err == nil {
			t.Fatal("proof to a tree larger than the log")
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		_, otherV, err := GenerateKey("hale-audit-test")
		if err != nil {
			t.Fatal(err)
		}
		ov, err := NewVerifier(otherV)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenCheckpoint(newCP, ov); err == nil {
			t.Fatal("checkpoint verified with another key")
		}
		forged := bytes.Replace(newCP, []byte("\n13\n"), []byte("\n12\n"), 1)
		if _, err := OpenCheckpoint(forged, v); err == nil {
			t.Fatal("edited checkpoint verified")
		}
	})

	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRangeHasherMatchesTlog(t *testing.T) {
	stored := map[int64]tlog.Hash{}
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var rh rangeHasher
	for n := int64(0); n <= 300; n++ {
		want, err := tlog.TreeHash(n, r)
		if err != nil {
			t.Fatal(err)
		}
		if got := rh.root(); got != want {
			t.Fatalf("size %d: root %v, want %v", n, got, want)
		}
		leaf := tlog.RecordHash(fmt.Appendf(nil, "leaf %d", n))
		hs, err := tlog.StoredHashesForRecordHash(n, leaf, r)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			stored[tlog.StoredHashIndex(0, n)+int64(i)] = h
		}
		rh.push(leaf)
	}
}

func TestConcurrentAppend(t *testing.T) {
	ctx := context.Background()
	l, db, _ := newLog(t, "")
	db.NoSync = true // many small commits; durability is not what this test is about
	const workers, each = 8, 25
	var wg sync.WaitGroup
	indexes := make(chan int64, workers*each)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				idx, err := l.Append(ctx, entry(w*each+i))
				if err != nil {
					errs <- err
					return
				}
				indexes <- idx
			}
		})
	}
	// Checkpoints and reads race with the writers.
	wg.Go(func() {
		for range 10 {
			if _, err := l.Checkpoint(ctx); err != nil {
				errs <- err
				return
			}
			if _, _, err := l.List(ctx, Filter{}, 0, 50); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(indexes)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make([]bool, workers*each)
	for idx := range indexes {
		if idx < 0 || idx >= int64(len(seen)) || seen[idx] {
			t.Fatalf("index %d out of range or given twice", idx)
		}
		seen[idx] = true
	}
	if n, _ := l.Size(ctx); n != workers*each {
		t.Fatalf("size %d, want %d", n, workers*each)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, v := keys(t)
	if _, err := VerifyExport(bytes.NewReader(export(t, l)), cp, v); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l, _, v := newLog(t, "")
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, 5*time.Millisecond) }()
	appendN(t, l, 0, 4)
	deadline := time.Now().Add(10 * time.Second)
	for {
		signed, err := l.Latest(ctx)
		if err == nil {
			cp, err := OpenCheckpoint(signed, v)
			if err != nil {
				t.Fatal(err)
			}
			if cp.N == 4 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Run made no checkpoint of 4 entries")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Run(context.Background(), 0); err == nil {
		t.Fatal("Run accepted a zero interval")
	}
}

func TestNewRejects(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "x.db"))
	defer db.Close()
	s, _ := keys(t)
	if _, err := New(db, nil); err == nil {
		t.Error("nil signer accepted")
	}
	if _, err := New(nil, s); err == nil {
		t.Error("nil db accepted")
	}
	for _, origin := range []string{"", "a\nb", " padded", strings.Repeat("o", 300), "tab\there"} {
		if _, err := New(db, s, WithOrigin(origin)); err == nil {
			t.Errorf("origin %q accepted", origin)
		}
	}
	_, otherV, _ := GenerateKey("other")
	ov, _ := NewVerifier(otherV)
	if _, err := New(db, s, WithVerifier(ov)); err == nil {
		t.Error("verifier of another key accepted")
	}
	if _, err := NewSigner("PRIVATE+KEY+nonsense"); err == nil {
		t.Error("bad signer key accepted")
	}
	if _, err := NewVerifier("nonsense"); err == nil {
		t.Error("bad verifier key accepted")
	}
}

func TestVerifierKey(t *testing.T) {
	k, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := VerifierKey(k[0])
	if err != nil {
		t.Fatal(err)
	}
	if vkey != k[1] {
		t.Fatalf("VerifierKey = %q, want %q", vkey, k[1])
	}
	if _, err := VerifierKey(k[1]); err == nil {
		t.Fatal("a public key was taken for a private one")
	}
	if _, err := VerifierKey(k[0][:len(k[0])-4] + "AAA="); err == nil {
		t.Fatal("a private key with the wrong key hash was accepted")
	}
}

func TestEmptyLog(t *testing.T) {
	ctx := context.Background()
	l, _, v := newLog(t, "")
	cp0, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(bytes.NewReader(nil), cp0, v); err != nil {
		t.Fatalf("empty export against an empty checkpoint: %v", err)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatal(err)
	}
	page, next, err := l.List(ctx, Filter{}, 0, 10)
	if err != nil || len(page) != 0 || next != 0 {
		t.Fatalf("List on an empty log = %v, %d, %v", page, next, err)
	}
	appendN(t, l, 0, 2)
	cp2, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.ConsistencyProof(ctx, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(cp0, cp2, v, p); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(bytes.NewReader(export(t, l)), cp0, v); err != nil {
		t.Fatalf("entries past an empty checkpoint: %v", err)
	}
}
