package audit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// splitLines splits an export into lines without their "\n".
func splitLines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func joinLines(lines [][]byte) []byte {
	if len(lines) == 0 {
		return nil
	}
	return append(bytes.Join(lines, []byte("\n")), '\n')
}

// replaceIn returns lines with line i's first old replaced by new; it fails t if old is absent,
// so a test never passes by editing nothing.
func replaceIn(t *testing.T, lines [][]byte, i int, old, new string) [][]byte {
	t.Helper()
	if !bytes.Contains(lines[i], []byte(old)) {
		t.Fatalf("line %d has no %q: %s", i, old, lines[i])
	}
	out := make([][]byte, len(lines))
	copy(out, lines)
	out[i] = bytes.Replace(lines[i], []byte(old), []byte(new), 1)
	return out
}

func TestVerifyExport(t *testing.T) {
	ctx := context.Background()
	l, _, v := newLog(t, "")
	appendN(t, l, 0, 10)
	cp10, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := export(t, l)
	lines := splitLines(good)
	prev4 := tlog.Hash{}
	if e, err := l.Get(ctx, 4); err != nil {
		t.Fatal(err)
	} else {
		prev4 = e.Prev
	}

	res, err := VerifyExport(bytes.NewReader(good), cp10, v)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 10 || res.CheckpointSize != 10 || res.TreeHash != res.CheckpointHash || res.Origin != DefaultOrigin {
		t.Fatalf("result %+v", res)
	}
	crlf := bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))
	if _, err := VerifyExport(bytes.NewReader(crlf), cp10, v); err != nil {
		t.Fatalf("CRLF line ends (same entries): %v", err)
	}

	// prev4B64 is entry 4's Prev as stored; changing one character of it changes entry 4.
	prev4B64 := prev4.String()
	flipped := []byte(prev4B64)
	flipped[5] ^= 1
	moved := [][]byte{lines[0], lines[1], lines[2], lines[4], lines[3]}
	moved = append(moved, lines[5:]...)
	removed := append(append([][]byte{}, lines[:4]...), lines[5:]...)
	duplicated := append(append([][]byte{}, lines[:5]...), lines[4:]...)
	longLine := append([][]byte{}, lines...)
	longLine[4] = fmt.Appendf(nil, `{"index":4,"actor":"%s"}`, strings.Repeat("a", MaxEntrySize))

	cases := []struct {
		name   string
		export []byte
		kind   string
		index  int64
	}{
		{"changed actor", joinLines(replaceIn(t, lines, 4, "tok_1", "tok_2")), KindChanged, 4},
		{"changed first entry", joinLines(replaceIn(t, lines, 0, "dev-0", "dev-9")), KindChanged, 0},
		{"changed prev field", joinLines(replaceIn(t, lines, 4, prev4B64, string(flipped))), KindChanged, 4},
		{"changed last entry", joinLines(replaceIn(t, lines, 9, "cmd-9", "cmd-8")), KindChanged, 9},
		{"changed index", joinLines(replaceIn(t, lines, 4, `"index":4`, `"index":7`)), KindMissing, 4},
		{"removed line", joinLines(removed), KindMissing, 4},
		{"swapped lines", joinLines(moved), KindOutOfOrder, 3},
		{"duplicated line", joinLines(duplicated), KindOutOfOrder, 4},
		{"truncated at a line", joinLines(lines[:7]), KindMissing, 7},
		{"truncated mid-line", good[:bytes.Index(good, lines[8])+20], KindMalformed, 8},
		{"empty", nil, KindMissing, 0},
		{"malformed JSON", joinLines(replaceIn(t, lines, 2, `"actor":`, `"actor"`)), KindMalformed, 2},
		{"unknown field", joinLines(replaceIn(t, lines, 2, `"actor":`, `"actr":`)), KindMalformed, 2},
		{"null line", joinLines(append([][]byte{[]byte("null")}, lines[1:]...)), KindMalformed, 0},
		{"blank line", joinLines(append(append([][]byte{}, lines[:3]...), append([][]byte{{}}, lines[3:]...)...)), KindMalformed, 3},
		{"line too long", joinLines(longLine), KindMalformed, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyExport(bytes.NewReader(tc.export), cp10, v)
			wantVerifyError(t, err, tc.kind, tc.index)
		})
	}

	// Entries past the checkpoint are checked for chaining, and proved by a newer checkpoint.
	appendN(t, l, 10, 3)
	longer := export(t, l)
	res, err = VerifyExport(bytes.NewReader(longer), cp10, v)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 13 || res.CheckpointSize != 10 {
		t.Fatalf("result %+v", res)
	}
	cp13, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := OpenCheckpoint(cp13, v); c.Hash != res.TreeHash {
		t.Fatal("Result.TreeHash differs from the newer checkpoint's hash")
	}
	longerLines := splitLines(longer)
	_, err = VerifyExport(bytes.NewReader(joinLines(replaceIn(t, longerLines, 9, "cmd-9", "cmd-8"))), cp10, v)
	wantVerifyError(t, err, KindChanged, 9)
	_, err = VerifyExport(bytes.NewReader(joinLines(replaceIn(t, longerLines, 11, "cmd-11", "cmd-18"))), cp10, v)
	wantVerifyError(t, err, KindChanged, 11)
	_, err = VerifyExport(bytes.NewReader(good), cp13, v)
	wantVerifyError(t, err, KindMissing, 10)

	// A log rebuilt from scratch with one entry different chains perfectly; only the signed
	// checkpoint catches it.
	forged, _, _ := newLog(t, "")
	appendN(t, forged, 0, 3)
	if _, err := forged.Append(ctx, entry(99)); err != nil {
		t.Fatal(err)
	}
	appendN(t, forged, 4, 9)
	_, err = VerifyExport(bytes.NewReader(export(t, forged)), cp10, v)
	wantVerifyError(t, err, KindMismatch, 9)

	if _, err := VerifyExport(bytes.NewReader(good), cp10[:len(cp10)-3], v); err == nil {
		t.Fatal("broken checkpoint accepted")
	}
	if _, err := VerifyExport(bytes.NewReader(good), cp10, nil); err == nil {
		t.Fatal("nil verifier accepted")
	}
}

// TestTamperedDatabase edits one byte of one stored entry in the bbolt file, as someone with
// access to the disk could, and checks both the server's self-check and an offline verification
// of an export against a checkpoint saved before the edit name that entry.
func TestTamperedDatabase(t *testing.T) {
	ctx := context.Background()
	s, v := keys(t)
	path := filepath.Join(t.TempDir(), "hale.db")

	db := openDB(t, path)
	l, err := New(db, s)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 40)
	saved, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyStored(ctx); err != nil {
		t.Fatalf("before tampering: %v", err)
	}
	if _, err := VerifyExport(bytes.NewReader(export(t, l)), saved, v); err != nil {
		t.Fatalf("before tampering: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Raw bbolt, no audit package: flip one byte of entry 17's stored value.
	const victim = 17
	raw := openDB(t, path)
	err = raw.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("audit_entries"))
		val := bytes.Clone(b.Get(key(victim)))
		at := bytes.Index(val, []byte(`"actor":"tok_`)) + len(`"actor":"tok_`)
		if at < len(`"actor":"tok_`) {
			return fmt.Errorf("entry %d has no actor: %s", victim, val)
		}
		val[at] ^= 0x01 // tok_2 -> tok_3: still valid JSON, a different actor
		return b.Put(key(victim), val)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	defer db.Close()
	l, err = New(db, s)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := l.Get(ctx, victim); err != nil || e.Actor != "tok_3" {
		t.Fatalf("tampered entry reads %+v, %v; the test edited the wrong byte", e, err)
	}
	err = l.VerifyStored(ctx)
	wantVerifyError(t, err, KindChanged, victim)
	t.Logf("VerifyStored: %v", err)

	_, err = VerifyExport(bytes.NewReader(export(t, l)), saved, v)
	wantVerifyError(t, err, KindChanged, victim)
	t.Logf("VerifyExport: %v", err)

	// The inclusion proof for the edited entry fails too; its neighbours' still verify.
	p, err := l.InclusionProof(ctx, victim, 40)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyInclusion(saved, v, p); err == nil {
		t.Fatal("inclusion proof of the tampered entry verified")
	}
	p, err = l.InclusionProof(ctx, victim+1, 40)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyInclusion(saved, v, p); err != nil {
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
			return tx.Bucket(bucketEntries).Delete(key(5))
		}, KindMissing, 5},
		{"size rolled back", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySize, key(8))
		}, KindMismatch, 8},
		{"stored leaf hash", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketHashes)
			h := bytes.Clone(b.Get(key(tlog.StoredHashIndex(0, 3))))
			h[0] ^= 1
			return b.Put(key(tlog.StoredHashIndex(0, 3)), h)
		}, KindChanged, 3},
		{"stored interior hash", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketHashes)
			idx := tlog.StoredHashIndex(1, 2) // written with entry 5
			h := bytes.Clone(b.Get(key(idx)))
			h[0] ^= 1
			return b.Put(key(idx), h)
		}, KindMismatch, 5},
		{"entries swapped", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketEntries)
			e2, e3 := bytes.Clone(b.Get(key(2))), bytes.Clone(b.Get(key(3)))
			if err := b.Put(key(2), e3); err != nil {
				return err
			}
			return b.Put(key(3), e2)
		}, KindChanged, 2},
		{"checkpoint replaced", func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketCheckpoints)
			cp := bytes.Clone(b.Get(key(10)))
			return b.Put(key(10), bytes.Replace(cp, []byte("\n10\n"), []byte("\n11\n"), 1))
		}, KindMismatch, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, db, _ := newLog(t, "")
			appendN(t, l, 0, 10)
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.edit); err != nil {
				t.Fatal(err)
			}
			wantVerifyError(t, l.VerifyStored(ctx), tc.kind, tc.index)
		})
	}
}

// FuzzVerifyExport feeds arbitrary exports to the verifier: it must never panic, and whenever it
// accepts, the lines the checkpoint covers must be exactly the logged entries.
func FuzzVerifyExport(f *testing.F) {
	ctx := context.Background()
	l, _, v := newLog(f, "")
	appendN(f, l, 0, 4)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	appendN(f, l, 4, 2)
	good := export(f, l)
	lines := splitLines(good)
	f.Add(good)
	f.Add(joinLines(lines[:4]))
	f.Add(joinLines(lines[:3]))
	f.Add(joinLines([][]byte{lines[1], lines[0], lines[2], lines[3]}))
	f.Add(bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("\n\n\n"))
	f.Add([]byte("null\n"))
	f.Add([]byte(`{"index":0,"details":{"a":"b"},"prev":"AAAA"}` + "\n"))
	f.Add([]byte(`{"index":-1}` + "\n"))
	f.Add([]byte(`{"index":9223372036854775807}` + "\n"))
	f.Add(bytes.Repeat([]byte("x"), MaxEntrySize+10))

	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := VerifyExport(bytes.NewReader(data), cp, v)
		if err != nil {
			return
		}
		if res.CheckpointSize != 4 || res.Entries < 4 {
			t.Fatalf("accepted with result %+v", res)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, MaxEntrySize+1)
		for i := 0; i < 4 && sc.Scan(); i++ {
			if !bytes.Equal(sc.Bytes(), lines[i]) {
				t.Fatalf("accepted a changed entry %d: %q", i, sc.Bytes())
			}
		}
	})
}

// FuzzOpenCheckpoint feeds arbitrary notes to the checkpoint parser: no panics, and nothing but
// the real checkpoint verifies.
func FuzzOpenCheckpoint(f *testing.F) {
	ctx := context.Background()
	l, _, v := newLog(f, "")
	appendN(f, l, 0, 3)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cp)
	f.Add(cp[:len(cp)-1])
	f.Add(bytes.Replace(cp, []byte("\n3\n"), []byte("\n4\n"), 1))
	f.Add([]byte("hale audit\n3\nxx\n\n— hale-audit-test AAAA\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := OpenCheckpoint(data, v)
		if err == nil && !bytes.Equal(data, cp) {
			// A different byte string may carry the same text and signature (e.g. more
			// signature lines); it must still say the same thing.
			want, _ := OpenCheckpoint(cp, v)
			if got != want {
				t.Fatalf("forged checkpoint verified: %+v", got)
			}
		}
	})
}
