package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// VerifyStored is the server's self-check: it recomputes every entry's leaf hash and every stored
// tree hash from the stored entries, checks the Prev chain and that nothing lies past the size,
// and checks each stored checkpoint's signature and tree hash. It returns a *VerifyError naming
// the first entry at fault. It reads in short transactions, so it may run while the log is used.
func (l *Log) VerifyStored(ctx context.Context) error {
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if err := l.verifyExtent(ctx, size); err != nil {
		return err
	}
	var prevLeaf tlog.Hash
	for start := int64(0); start < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(size, start+batchSize)
		// Entries and hashes below size never change, so batches in separate transactions see
		// one consistent log.
		err := l.st.View(ctx, func(tx Tx) error {
			r := hashReader{ctx: ctx, r: tx.Audit()}
			for n := start; n < end; n++ {
				data, err := r.r.Entry(ctx, n)
				if errors.Is(err, ErrNotFound) {
					return &VerifyError{Index: n, Kind: KindMissing, Detail: "entry is missing from the database"}
				} else if err != nil {
					return err
				}
				e, err := decodeStored(n, data)
				if err != nil {
					return err
				}
				leaf := tlog.RecordHash(data)
				stored, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, n)})
				if err != nil {
					return &VerifyError{Index: n, Kind: KindMismatch, Detail: err.Error()}
				}
				if stored[0] != leaf {
					return &VerifyError{Index: n, Kind: KindChanged, Detail: "the stored entry no longer matches the leaf hash stored with it"}
				}
				if e.Prev != prevLeaf {
					return &VerifyError{Index: n, Kind: KindChanged, Detail: fmt.Sprintf("its recorded previous hash does not match entry %d", n-1)}
				}
				// Earlier hashes were checked by earlier iterations, so recomputing this
				// entry's interior hashes from them checks the ones stored with it.
				want, err := tlog.StoredHashesForRecordHash(n, leaf, r)
				if err != nil {
					return &VerifyError{Index: n, Kind: KindMismatch, Detail: err.Error()}
				}
				base := tlog.StoredHashIndex(0, n)
				for i, h := range want {
					got, err := r.ReadHashes([]int64{base + int64(i)})
					if err != nil || got[0] != h {
						return &VerifyError{Index: n, Kind: KindMismatch, Detail: fmt.Sprintf("stored tree hash %d (written with entry %d) is wrong", base+int64(i), n)}
					}
				}
				prevLeaf = leaf
			}
			return nil
		})
		if err != nil {
			return err
		}
		start = end
	}
	return l.verifyCheckpoints(ctx, size)
}

// verifyExtent checks that nothing is stored past the size: an entry or hash there means the
// size was rolled back to hide entries.
func (l *Log) verifyExtent(ctx context.Context, size int64) error {
	return l.st.View(ctx, func(tx Tx) error {
		entries, hashes, err := tx.Audit().Extent(ctx)
		switch {
		case errors.Is(err, ErrCorrupt):
			return &VerifyError{Index: size, Kind: KindMismatch, Detail: fmt.Sprintf("the stored log past the recorded size %d: %v", size, err)}
		case err != nil:
			return err
		case entries > size:
			return &VerifyError{Index: size, Kind: KindMismatch, Detail: fmt.Sprintf("entries are stored past the recorded size %d: the size was changed", size)}
		case hashes > tlog.StoredHashCount(size):
			return &VerifyError{Index: size, Kind: KindMismatch, Detail: fmt.Sprintf("tree hashes are stored past the recorded size %d: the size was changed", size)}
		}
		return nil
	})
}

// verifyCheckpoints checks every stored checkpoint against the (already verified) stored hashes.
func (l *Log) verifyCheckpoints(ctx context.Context, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.st.View(ctx, func(tx Tx) error {
		r := hashReader{ctx: ctx, r: tx.Audit()}
		err := r.r.Checkpoints(ctx, func(at int64, v []byte) error {
			cp, err := OpenCheckpoint(v, l.verifier)
			if err != nil {
				return &VerifyError{Index: max(at-1, 0), Kind: KindMismatch, Detail: fmt.Sprintf("stored checkpoint at size %d does not verify: %v", at, err)}
			}
			if cp.N != at || cp.N > size || cp.Origin != l.origin {
				return &VerifyError{Index: max(at-1, 0), Kind: KindMismatch,
					Detail: fmt.Sprintf("stored checkpoint at size %d is for origin %q size %d (log %q has %d entries)", at, cp.Origin, cp.N, l.origin, size)}
			}
			h, err := tlog.TreeHash(cp.N, r)
			if err != nil {
				return &VerifyError{Index: max(at-1, 0), Kind: KindMismatch, Detail: err.Error()}
			}
			if h != cp.Hash {
				return &VerifyError{Index: max(at-1, 0), Kind: KindMismatch,
					Detail: fmt.Sprintf("the tree of the first %d entries does not match its signed checkpoint", cp.N)}
			}
			return nil
		})
		if errors.Is(err, ErrCorrupt) {
			// A checkpoint stored under a key that is no tree size.
			return &VerifyError{Index: 0, Kind: KindMismatch, Detail: fmt.Sprintf("a stored checkpoint does not verify: %v", err)}
		}
		return err
	})
}

// VerifyCheckpoint checks a signed checkpoint, from anywhere (a backup's manifest, a copy an
// auditor kept), against the stored log: its signature under the log's verifier, its origin,
// that the log holds at least its entries, and that their tree hashes to it. It returns the
// checkpoint it opened.
func (l *Log) VerifyCheckpoint(ctx context.Context, signed []byte) (Checkpoint, error) {
	cp, err := OpenCheckpoint(signed, l.verifier)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Origin != l.origin {
		return cp, fmt.Errorf("audit: the checkpoint is for log %q, not %q", cp.Origin, l.origin)
	}
	err = l.st.View(ctx, func(tx Tx) error {
		r := hashReader{ctx: ctx, r: tx.Audit()}
		size, err := r.r.Size(ctx)
		if err != nil {
			return err
		}
		if cp.N > size {
			return &VerifyError{Index: size, Kind: KindMissing, Detail: fmt.Sprintf("the checkpoint covers %d entries; the log holds %d", cp.N, size)}
		}
		h, err := tlog.TreeHash(cp.N, r)
		if err != nil {
			return &VerifyError{Index: max(cp.N-1, 0), Kind: KindMismatch, Detail: err.Error()}
		}
		if h != cp.Hash {
			return &VerifyError{Index: max(cp.N-1, 0), Kind: KindMismatch, Detail: fmt.Sprintf("the tree of the first %d entries does not match the checkpoint", cp.N)}
		}
		return nil
	})
	return cp, err
}
