package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/audit/audittest"
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
	l, _, v := newLog(t)
	audittest.AppendN(t, l, 0, 10)
	cp10, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := audittest.Export(t, l)
	lines := splitLines(good)
	prev4 := tlog.Hash{}
	if e, err := l.Get(ctx, 4); err != nil {
		t.Fatal(err)
	} else {
		prev4 = e.Prev
	}

	res, err := audit.VerifyExport(bytes.NewReader(good), cp10, v)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 10 || res.CheckpointSize != 10 || res.TreeHash != res.CheckpointHash || res.Origin != audit.DefaultOrigin {
		t.Fatalf("result %+v", res)
	}
	crlf := bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))
	if _, err := audit.VerifyExport(bytes.NewReader(crlf), cp10, v); err != nil {
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
	longLine[4] = fmt.Appendf(nil, `{"index":4,"actor":"%s"}`, strings.Repeat("a", audit.MaxEntrySize))

	cases := []struct {
		name   string
		export []byte
		kind   string
		index  int64
	}{
		{"changed actor", joinLines(replaceIn(t, lines, 4, "tok_1", "tok_2")), audit.KindChanged, 4},
		{"changed first entry", joinLines(replaceIn(t, lines, 0, "dev-0", "dev-9")), audit.KindChanged, 0},
		{"changed prev field", joinLines(replaceIn(t, lines, 4, prev4B64, string(flipped))), audit.KindChanged, 4},
		{"changed last entry", joinLines(replaceIn(t, lines, 9, "cmd-9", "cmd-8")), audit.KindChanged, 9},
		{"changed index", joinLines(replaceIn(t, lines, 4, `"index":4`, `"index":7`)), audit.KindMissing, 4},
		{"removed line", joinLines(removed), audit.KindMissing, 4},
		{"swapped lines", joinLines(moved), audit.KindOutOfOrder, 3},
		{"duplicated line", joinLines(duplicated), audit.KindOutOfOrder, 4},
		{"truncated at a line", joinLines(lines[:7]), audit.KindMissing, 7},
		{"truncated mid-line", good[:bytes.Index(good, lines[8])+20], audit.KindMalformed, 8},
		{"empty", nil, audit.KindMissing, 0},
		{"malformed JSON", joinLines(replaceIn(t, lines, 2, `"actor":`, `"actor"`)), audit.KindMalformed, 2},
		{"unknown field", joinLines(replaceIn(t, lines, 2, `"actor":`, `"actr":`)), audit.KindMalformed, 2},
		{"null line", joinLines(append([][]byte{[]byte("null")}, lines[1:]...)), audit.KindMalformed, 0},
		{"blank line", joinLines(append(append([][]byte{}, lines[:3]...), append([][]byte{{}}, lines[3:]...)...)), audit.KindMalformed, 3},
		{"line too long", joinLines(longLine), audit.KindMalformed, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.VerifyExport(bytes.NewReader(tc.export), cp10, v)
			audittest.WantVerifyError(t, err, tc.kind, tc.index)
		})
	}

	// Entries past the checkpoint are checked for chaining, and proved by a newer checkpoint.
	audittest.AppendN(t, l, 10, 3)
	longer := audittest.Export(t, l)
	res, err = audit.VerifyExport(bytes.NewReader(longer), cp10, v)
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
	if c, _ := audit.OpenCheckpoint(cp13, v); c.Hash != res.TreeHash {
		t.Fatal("Result.TreeHash differs from the newer checkpoint's hash")
	}
	longerLines := splitLines(longer)
	_, err = audit.VerifyExport(bytes.NewReader(joinLines(replaceIn(t, longerLines, 9, "cmd-9", "cmd-8"))), cp10, v)
	audittest.WantVerifyError(t, err, audit.KindChanged, 9)
	_, err = audit.VerifyExport(bytes.NewReader(joinLines(replaceIn(t, longerLines, 11, "cmd-11", "cmd-18"))), cp10, v)
	audittest.WantVerifyError(t, err, audit.KindChanged, 11)
	_, err = audit.VerifyExport(bytes.NewReader(good), cp13, v)
	audittest.WantVerifyError(t, err, audit.KindMissing, 10)

	// A log rebuilt from scratch with one entry different chains perfectly; only the signed
	// checkpoint catches it.
	forged, _, _ := newLog(t)
	audittest.AppendN(t, forged, 0, 3)
	if _, err := forged.Append(ctx, audittest.Entry(99)); err != nil {
		t.Fatal(err)
	}
	audittest.AppendN(t, forged, 4, 9)
	_, err = audit.VerifyExport(bytes.NewReader(audittest.Export(t, forged)), cp10, v)
	audittest.WantVerifyError(t, err, audit.KindMismatch, 9)

	if _, err := audit.VerifyExport(bytes.NewReader(good), cp10[:len(cp10)-3], v); err == nil {
		t.Fatal("broken checkpoint accepted")
	}
	if _, err := audit.VerifyExport(bytes.NewReader(good), cp10, nil); err == nil {
		t.Fatal("nil verifier accepted")
	}
}

// FuzzVerifyExport feeds arbitrary exports to the verifier: it must never panic, and whenever it
// accepts, the lines the checkpoint covers must be exactly the logged entries.
func FuzzVerifyExport(f *testing.F) {
	ctx := context.Background()
	l, _, v := newLog(f)
	audittest.AppendN(f, l, 0, 4)
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		f.Fatal(err)
	}
	audittest.AppendN(f, l, 4, 2)
	good := audittest.Export(f, l)
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
	f.Add(bytes.Repeat([]byte("x"), audit.MaxEntrySize+10))

	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := audit.VerifyExport(bytes.NewReader(data), cp, v)
		if err != nil {
			return
		}
		if res.CheckpointSize != 4 || res.Entries < 4 {
			t.Fatalf("accepted with result %+v", res)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, audit.MaxEntrySize+1)
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
	l, _, v := newLog(f)
	audittest.AppendN(f, l, 0, 3)
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
		got, err := audit.OpenCheckpoint(data, v)
		if err == nil && !bytes.Equal(data, cp) {
			// A different byte string may carry the same text and signature (e.g. more
			// signature lines); it must still say the same thing.
			want, _ := audit.OpenCheckpoint(cp, v)
			if got != want {
				t.Fatalf("forged checkpoint verified: %+v", got)
			}
		}
	})
}
