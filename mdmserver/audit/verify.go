package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Kinds of verification failure.
const (
	KindChanged    = "changed"      // the entry's bytes differ from what was logged
	KindMissing    = "missing"      // the entry is absent (removed line, truncated log)
	KindOutOfOrder = "out of order" // the entry is present but not where its index says
	KindMalformed  = "malformed"    // not a valid entry (bad JSON, too long)
	KindMismatch   = "mismatch"     // the tree does not match the checkpoint as a whole
)

// VerifyError says which entry failed verification and how.
type VerifyError struct {
	Index  int64  // the entry at fault
	Line   int64  // 1-based line of an export, 0 when not verifying an export
	Kind   string // one of the Kind constants
	Detail string
}

func (e *VerifyError) Error() string {
	where := ""
	if e.Line > 0 {
		where = fmt.Sprintf(" (export line %d)", e.Line)
	}
	return fmt.Sprintf("audit verify: entry %d %s%s: %s", e.Index, e.Kind, where, e.Detail)
}

// Result describes a verified export.
type Result struct {
	// Origin, CheckpointSize and CheckpointHash are from the signed checkpoint. Entries
	// 0..CheckpointSize-1 are proved unaltered.
	Origin         string
	CheckpointSize int64
	CheckpointHash tlog.Hash
	// Entries is how many lines the export held. Those past CheckpointSize are checked for order
	// and chaining only; compare Entries and TreeHash with a newer checkpoint to prove them too.
	Entries  int64
	TreeHash tlog.Hash
}

// VerifyExport verifies a JSON Lines export of the whole log (Log.Export with an empty Filter)
// against a signed checkpoint: signature, indexes 0..N-1 in order, each entry's Prev against the
// previous line's hash, and the tree hash at the checkpoint's size. It reads r once, keeping
// O(log n) state, bounds every line to MaxEntrySize, and returns a *VerifyError naming the entry
// at fault when the export does not match.
func VerifyExport(r io.Reader, checkpoint []byte, verifier note.Verifier) (Result, error) {
	cp, err := OpenCheckpoint(checkpoint, verifier)
	if err != nil {
		return Result{}, err
	}
	res := Result{Origin: cp.Origin, CheckpointSize: cp.N, CheckpointHash: cp.Hash}
	sc := bufio.NewScanner(r)
	// The buffer's capacity also bounds a line: keep it below the limit.
	sc.Buffer(make([]byte, 0, 4096), MaxEntrySize+1)

	var (
		i        int64 // index expected on the next line
		prevLeaf tlog.Hash
		tree     rangeHasher
		atN      = tree.root() // tree hash after N lines
		// broken is the entry whose hash the next entry's Prev contradicts: either it was
		// changed, or the next entry's Prev was. In the second case the next entry's own hash
		// changed too, so the line after it tells which.
		broken int64 = -1
	)
	for sc.Scan() {
		line := sc.Bytes()
		e, err := decodeEntry(line)
		if err != nil {
			return res, &VerifyError{Index: i, Line: i + 1, Kind: KindMalformed, Detail: err.Error()}
		}
		if e.Index != i {
			return res, orderError(sc, i, e.Index)
		}
		leaf := tlog.RecordHash(line)
		linked := e.Prev == prevLeaf
		if broken >= 0 {
			if linked {
				return res, changedError(broken, "its hash no longer matches the one entry %d recorded", broken+1)
			}
			return res, changedError(broken+1, "its recorded previous hash matches neither entry %d nor the one entry %d recorded for it", broken, broken+2)
		}
		if !linked {
			if i == 0 {
				return res, changedError(0, "the first entry must record an all-zero previous hash")
			}
			broken = i - 1
		}
		tree.push(leaf)
		prevLeaf = leaf
		i++
		if i == cp.N {
			atN = tree.root()
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return res, &VerifyError{Index: i, Line: i + 1, Kind: KindMalformed, Detail: fmt.Sprintf("line longer than %d bytes", MaxEntrySize)}
		}
		return res, fmt.Errorf("audit verify: reading export: %w", err)
	}
	res.Entries, res.TreeHash = i, tree.root()
	if broken >= 0 {
		return res, changedError(broken, "its hash no longer matches the one entry %d recorded (or entry %d's record of it was changed)", broken+1, broken+1)
	}
	if i < cp.N {
		return res, &VerifyError{Index: i, Line: i + 1, Kind: KindMissing,
			Detail: fmt.Sprintf("the export ends after %d entries but the checkpoint covers %d: entries %d..%d are missing", i, cp.N, i, cp.N-1)}
	}
	if atN != cp.Hash {
		if cp.N == i && i > 0 {
			return res, changedError(cp.N-1, "the tree hash of entries 0..%d does not match the signed checkpoint (entry %d, the last, was changed, or the log was rewritten)", cp.N-1, cp.N-1)
		}
		return res, &VerifyError{Index: max(cp.N-1, 0), Line: max(cp.N, 1), Kind: KindMismatch,
			Detail: fmt.Sprintf("the tree hash of entries 0..%d does not match the signed checkpoint: the log was rewritten, or the checkpoint is another log's", cp.N-1)}
	}
	return res, nil
}

func changedError(index int64, format string, args ...any) *VerifyError {
	return &VerifyError{Index: index, Line: index + 1, Kind: KindChanged, Detail: fmt.Sprintf(format, args...)}
}

// orderError explains why line want+1 holds index got: it reads on (indexes only) to tell a
// missing entry from a reordered one.
func orderError(sc *bufio.Scanner, want, got int64) error {
	line := want + 1
	if got < want && got >= 0 {
		return &VerifyError{Index: got, Line: line, Kind: KindOutOfOrder,
			Detail: fmt.Sprintf("line %d holds entry %d again (duplicated or moved; entry %d was expected)", line, got, want)}
	}
	laterLine := int64(0)
	for l := line + 1; sc.Scan(); l++ {
		if e, err := decodeEntry(sc.Bytes()); err == nil && e.Index == want {
			laterLine = l
			break
		}
	}
	switch {
	case laterLine > 0:
		return &VerifyError{Index: want, Line: line, Kind: KindOutOfOrder,
			Detail: fmt.Sprintf("line %d holds entry %d; entry %d is at line %d", line, got, want, laterLine)}
	default:
		return &VerifyError{Index: want, Line: line, Kind: KindMissing,
			Detail: fmt.Sprintf("line %d holds entry %d; entry %d never appears", line, got, want)}
	}
}

// VerifyInclusion checks that p proves its entry is in the tree of the signed checkpoint, and
// returns the entry.
func VerifyInclusion(checkpoint []byte, verifier note.Verifier, p *InclusionProof) (Entry, error) {
	cp, err := OpenCheckpoint(checkpoint, verifier)
	if err != nil {
		return Entry{}, err
	}
	if p == nil {
		return Entry{}, errors.New("audit: no inclusion proof given")
	}
	if p.TreeSize != cp.N {
		return Entry{}, fmt.Errorf("audit: inclusion proof is for a tree of %d entries, the checkpoint has %d: ask for a proof at the checkpoint's size", p.TreeSize, cp.N)
	}
	if len(p.Entry) > MaxEntrySize {
		return Entry{}, &VerifyError{Index: p.Index, Kind: KindMalformed, Detail: fmt.Sprintf("entry longer than %d bytes", MaxEntrySize)}
	}
	e, err := decodeEntry(p.Entry)
	if err != nil {
		return Entry{}, &VerifyError{Index: p.Index, Kind: KindMalformed, Detail: err.Error()}
	}
	if e.Index != p.Index {
		return Entry{}, &VerifyError{Index: p.Index, Kind: KindChanged, Detail: fmt.Sprintf("the proof is for entry %d but the entry says %d", p.Index, e.Index)}
	}
	if p.Index < 0 || p.Index >= cp.N || len(p.Proof) > 64 {
		return Entry{}, &VerifyError{Index: p.Index, Kind: KindMismatch, Detail: fmt.Sprintf("no valid proof for entry %d in a tree of %d", p.Index, cp.N)}
	}
	if err := tlog.CheckRecord(p.Proof, cp.N, cp.Hash, p.Index, tlog.RecordHash(p.Entry)); err != nil {
		return Entry{}, &VerifyError{Index: p.Index, Kind: KindChanged, Detail: fmt.Sprintf("not in the signed tree of %d entries: %v", cp.N, err)}
	}
	return e, nil
}

// VerifyConsistency checks that p proves the newer checkpoint's tree extends the older one's:
// nothing the old checkpoint covered was changed, removed or reordered since.
func VerifyConsistency(oldCheckpoint, newCheckpoint []byte, verifier note.Verifier, p tlog.TreeProof) error {
	older, err := OpenCheckpoint(oldCheckpoint, verifier)
	if err != nil {
		return fmt.Errorf("old %w", err)
	}
	newer, err := OpenCheckpoint(newCheckpoint, verifier)
	if err != nil {
		return fmt.Errorf("new %w", err)
	}
	if older.Origin != newer.Origin {
		return fmt.Errorf("audit: checkpoints are of different logs (%q, %q)", older.Origin, newer.Origin)
	}
	switch {
	case older.N > newer.N:
		return fmt.Errorf("audit: the new checkpoint (%d entries) is smaller than the old one (%d): the log shrank", newer.N, older.N)
	case older.N == 0:
		return nil // every tree extends the empty one
	case older.N == newer.N:
		if older.Hash != newer.Hash {
			return fmt.Errorf("audit: two checkpoints of %d entries with different hashes: the log was rewritten", older.N)
		}
		return nil
	}
	if len(p) > 128 {
		return fmt.Errorf("audit: consistency proof has %d hashes, too many for any tree", len(p))
	}
	if err := tlog.CheckTree(p, newer.N, newer.Hash, older.N, older.Hash); err != nil {
		return fmt.Errorf("audit: the tree of %d entries does not extend the checkpoint of %d: %w", newer.N, older.N, err)
	}
	return nil
}

// rangeHasher computes the RFC 6962 tree hash of a stream of leaves in O(log n) memory: it keeps
// the roots of the complete subtrees, largest first, merging equal sizes as leaves arrive.
type rangeHasher struct {
	hashes []tlog.Hash
	sizes  []int64
}

func (r *rangeHasher) push(leaf tlog.Hash) {
	r.hashes = append(r.hashes, leaf)
	r.sizes = append(r.sizes, 1)
	for n := len(r.sizes); n >= 2 && r.sizes[n-1] == r.sizes[n-2]; n = len(r.sizes) {
		r.hashes[n-2] = tlog.NodeHash(r.hashes[n-2], r.hashes[n-1])
		r.sizes[n-2] *= 2
		r.hashes, r.sizes = r.hashes[:n-1], r.sizes[:n-1]
	}
}

// root folds the subtrees right to left, as RFC 6962 splits a tree at its largest power of two.
func (r *rangeHasher) root() tlog.Hash {
	if len(r.hashes) == 0 {
		return emptyTree()
	}
	h := r.hashes[len(r.hashes)-1]
	for i := len(r.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(r.hashes[i], h)
	}
	return h
}

// emptyTree is the hash of the empty tree: SHA-256 of nothing, as tlog.TreeHash(0) returns.
func emptyTree() tlog.Hash {
	h, _ := tlog.TreeHash(0, nil)
	return h
}
