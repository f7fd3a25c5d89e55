package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// GenerateKey makes an Ed25519 note key pair named name (no spaces or "+"): skey signs
// checkpoints and must be kept secret (the server seals it at rest), vkey verifies them and is
// given to auditors and to `mdmctl audit verify`.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("audit: generating checkpoint key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// NewSigner parses a private key made by GenerateKey.
func NewSigner(skey string) (note.Signer, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		// The key is secret: never echo it.
		return nil, fmt.Errorf("audit: parsing checkpoint signing key: %w", err)
	}
	return s, nil
}

// NewVerifier parses a public key made by GenerateKey.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: parsing checkpoint verifier key %.80q: %w", vkey, err)
	}
	return v, nil
}

// VerifierKey derives the public verifier key from a private key made by GenerateKey, so a
// server that keeps only the (sealed) private key can still publish the public one.
func VerifierKey(skey string) (string, error) {
	s, err := NewSigner(skey) // validates the format and the key hash
	if err != nil {
		return "", err
	}
	// PRIVATE+KEY+name+hash+base64: the key is what follows the fourth "+" (base64 has "+" too).
	rest := skey
	for range 4 {
		_, rest, _ = strings.Cut(rest, "+")
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 { // 1: note's Ed25519 tag
		return "", errors.New("audit: checkpoint signing key is not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return "", fmt.Errorf("audit: deriving verifier key: %w", err)
	}
	return vkey, nil
}

// resigner verifies by signing again: Ed25519 signatures are deterministic, so the log can check
// its own checkpoints without being handed the public key.
type resigner struct{ s note.Signer }

func (r resigner) Name() string    { return r.s.Name() }
func (r resigner) KeyHash() uint32 { return r.s.KeyHash() }
func (r resigner) Verify(msg, sig []byte) bool {
	again, err := r.s.Sign(msg)
	return err == nil && bytes.Equal(again, sig)
}

// Checkpoint signs the log's current tree and stores the signed note, which it returns. A
// checkpoint of an unchanged size is returned as stored, not signed again.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var signed []byte
	err := l.st.Update(ctx, func(tx Tx) error {
		r := tx.Audit()
		n, err := r.Size(ctx)
		if err != nil {
			return err
		}
		if signed, err = r.Checkpoint(ctx, n); !errors.Is(err, ErrNoCheckpoint) {
			return err
		}
		h, err := tlog.TreeHash(n, hashReader{ctx: ctx, r: r})
		if err != nil {
			return fmt.Errorf("audit: tree hash at size %d: %w", n, err)
		}
		signed, err = note.Sign(&note.Note{Text: checkpointText(l.origin, tlog.Tree{N: n, Hash: h})}, l.signer)
		if err != nil {
			return fmt.Errorf("audit: signing checkpoint: %w", err)
		}
		return r.PutCheckpoint(ctx, n, signed)
	})
	if err != nil {
		return nil, err
	}
	return signed, nil
}

// Latest returns the most recent signed checkpoint, or ErrNoCheckpoint.
func (l *Log) Latest(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var signed []byte
	err := l.st.View(ctx, func(tx Tx) error {
		var err error
		signed, err = tx.Audit().LatestCheckpoint(ctx)
		return err
	})
	return signed, err
}

// LatestSize returns the tree size of the most recent signed checkpoint, or ErrNoCheckpoint.
func (l *Log) LatestSize(ctx context.Context) (int64, error) {
	signed, err := l.Latest(ctx)
	if err != nil {
		return 0, err
	}
	cp, err := OpenCheckpoint(signed, l.verifier)
	if err != nil {
		return 0, err
	}
	return cp.N, nil
}

// Run makes a checkpoint at start and then every interval whenever the log grew, until ctx is
// done. Failures are logged, not fatal: the next tick tries again.
func (l *Log) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("audit: checkpoint interval %v must be positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		l.checkpointIfGrown(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (l *Log) checkpointIfGrown(ctx context.Context) {
	n, err := l.Size(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.logger.Error("audit checkpoint: reading size", "err", err)
		}
		return
	}
	var last int64 = -1
	if signed, err := l.Latest(ctx); err == nil {
		if cp, err := OpenCheckpoint(signed, l.verifier); err == nil {
			last = cp.N
		}
	}
	if n == last || n == 0 {
		return
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		if ctx.Err() == nil {
			l.logger.Error("audit checkpoint", "err", err)
		}
		return
	}
	l.logger.Info("audit checkpoint signed", "size", n)
}

// InclusionProof proves that an entry is in a tree. It carries the entry's stored bytes, so a
// client needs nothing else but the signed checkpoint of TreeSize to check it (VerifyInclusion).
type InclusionProof struct {
	Index    int64            `json:"index"`
	TreeSize int64            `json:"tree_size"`
	Entry    json.RawMessage  `json:"entry"`
	Proof    tlog.RecordProof `json:"proof"`
	// TreeHash is for display; VerifyInclusion takes the hash from the signed checkpoint.
	TreeHash tlog.Hash `json:"tree_hash"`
}

// InclusionProof proves entry index is in the tree of treeSize entries. treeSize 0 means the
// size of the latest checkpoint.
func (l *Log) InclusionProof(ctx context.Context, index, treeSize int64) (*InclusionProof, error) {
	if treeSize == 0 {
		var err error
		if treeSize, err = l.LatestSize(ctx); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &InclusionProof{Index: index, TreeSize: treeSize}
	err := l.st.View(ctx, func(tx Tx) error {
		r := tx.Audit()
		n, err := r.Size(ctx)
		if err != nil {
			return err
		}
		if index < 0 || index >= treeSize || treeSize > n {
			return fmt.Errorf("%w: no inclusion proof for entry %d in a tree of %d (the log has %d entries)", ErrOutOfRange, index, treeSize, n)
		}
		hr := hashReader{ctx: ctx, r: r}
		if p.Proof, err = tlog.ProveRecord(treeSize, index, hr); err != nil {
			return fmt.Errorf("audit: proving entry %d: %w", index, err)
		}
		if p.TreeHash, err = tlog.TreeHash(treeSize, hr); err != nil {
			return fmt.Errorf("audit: tree hash at size %d: %w", treeSize, err)
		}
		v, err := r.Entry(ctx, index)
		if errors.Is(err, ErrNotFound) {
			return &VerifyError{Index: index, Kind: KindMissing, Detail: "entry is missing from the database"}
		} else if err != nil {
			return err
		}
		p.Entry = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ConsistencyProof proves the tree of newSize entries extends the tree of oldSize entries, so a
// client holding an old checkpoint can trust a new one (VerifyConsistency).
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p tlog.TreeProof
	err := l.st.View(ctx, func(tx Tx) error {
		r := tx.Audit()
		n, err := r.Size(ctx)
		if err != nil {
			return err
		}
		if oldSize < 0 || oldSize > newSize || newSize > n {
			return fmt.Errorf("%w: no consistency proof from size %d to %d (the log has %d entries)", ErrOutOfRange, oldSize, newSize, n)
		}
		if oldSize == 0 {
			p = tlog.TreeProof{} // every tree extends the empty one
			return nil
		}
		p, err = tlog.ProveTree(newSize, oldSize, hashReader{ctx: ctx, r: r})
		if err != nil {
			return fmt.Errorf("audit: proving size %d extends %d: %w", newSize, oldSize, err)
		}
		return nil
	})
	return p, err
}

// checkpointText is tlog.FormatTree's text with the origin in place of its fixed first line.
func checkpointText(origin string, t tlog.Tree) string {
	text := tlog.FormatTree(t)
	return origin + string(text[bytes.IndexByte(text, '\n'):])
}

// treeLine is tlog's fixed first line, put back before handing the text to tlog.ParseTree.
const treeLine = "go.sum database tree"

// Checkpoint is an opened, signature-checked checkpoint.
type Checkpoint struct {
	Origin string
	tlog.Tree
}

// MaxCheckpointSize bounds a signed checkpoint note.
const MaxCheckpointSize = 16 << 10

// OpenCheckpoint checks signed's signature with v and parses it.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("audit: no checkpoint verifier key given")
	}
	if len(signed) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint is %d bytes, limit %d", len(signed), MaxCheckpointSize)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint signature not valid for key %q: %w", v.Name(), err)
	}
	origin, rest, ok := bytes.Cut([]byte(n.Text), []byte("\n"))
	if !ok || checkOrigin(string(origin)) != nil {
		return Checkpoint{}, errors.New("audit: checkpoint has no valid origin line")
	}
	tree, err := tlog.ParseTree(append([]byte(treeLine+"\n"), rest...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint text: %w", err)
	}
	return Checkpoint{Origin: string(origin), Tree: tree}, nil
}

// SignStatement signs text (ending in a newline) as a note with the log's key, as it signs
// checkpoints: what the server vouches for beyond the log itself (an evidence pack's
// manifest), checked with the same verifier key an auditor keeps. Sign only texts that cannot
// be mistaken for a checkpoint: a checkpoint's first line is the log's origin.
func (l *Log) SignStatement(text string) ([]byte, error) {
	if strings.HasPrefix(text, l.origin+"\n") {
		return nil, errors.New("audit: a statement must not look like a checkpoint")
	}
	return note.Sign(&note.Note{Text: text}, l.signer)
}
