package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Log is the audit log as a service over a [Store]: it appends in units of work of its own,
// signs checkpoints, answers reads and proofs, and checks what is stored. It keeps no state in
// memory beyond its configuration, so any number of goroutines may use it at once. To append
// inside a unit of work that makes the audited change, call [Append] on that unit's Repository
// instead.
type Log struct {
	st       Store
	signer   note.Signer
	verifier note.Verifier
	origin   string
	logger   *slog.Logger
	now      func() time.Time
	maxScan  int // entries one List call examines; a field so tests need not write thousands
}

// Option configures a Log.
type Option func(*Log)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(logger *slog.Logger) Option { return func(l *Log) { l.logger = logger } }

// WithClock sets the clock [Log.Append] stamps entries without a time with (for tests).
func WithClock(now func() time.Time) Option { return func(l *Log) { l.now = now } }

// WithOrigin sets the checkpoint's origin line (default DefaultOrigin). It names the log, so a
// checkpoint of one log is never taken for another's.
func WithOrigin(origin string) Option { return func(l *Log) { l.origin = origin } }

// WithVerifier sets the verifier that VerifyStored checks stored checkpoints with. Without it the
// log re-signs each checkpoint and compares, which works for Ed25519 (deterministic signatures).
func WithVerifier(v note.Verifier) Option { return func(l *Log) { l.verifier = v } }

// New returns the audit log kept in st. signer signs checkpoints; make one with NewSigner from
// a key made by GenerateKey.
func New(st Store, signer note.Signer, opts ...Option) (*Log, error) {
	if st == nil {
		return nil, errors.New("audit: nil store")
	}
	if signer == nil {
		return nil, errors.New("audit: nil checkpoint signer: make one with audit.NewSigner")
	}
	l := &Log{st: st, signer: signer, origin: DefaultOrigin, logger: slog.Default(), now: time.Now, maxScan: maxScan}
	for _, opt := range opts {
		opt(l)
	}
	if err := checkOrigin(l.origin); err != nil {
		return nil, err
	}
	if l.verifier == nil {
		l.verifier = resigner{signer}
	}
	if l.verifier.Name() != signer.Name() || l.verifier.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("audit: verifier key %q does not match signer key %q", l.verifier.Name(), signer.Name())
	}
	return l, nil
}

// Open returns the log kept in st for reading and verifying only, against the verifier key v:
// a restore checks its copy with the key an auditor kept, without the master key that unseals
// the signing key. Its Checkpoint fails; appending works but is not what it is for.
func Open(st Store, v note.Verifier, opts ...Option) (*Log, error) {
	if v == nil {
		return nil, errors.New("audit: nil verifier: make one with audit.NewVerifier")
	}
	return New(st, verifyOnly{v}, append([]Option{WithVerifier(v)}, opts...)...)
}

// verifyOnly is the signer of a log opened to verify: it has the key's name and hash, and
// refuses to sign.
type verifyOnly struct{ note.Verifier }

func (verifyOnly) Sign([]byte) ([]byte, error) {
	return nil, errors.New("audit: the log was opened to verify only; it cannot sign")
}

// Append appends e in a unit of work of its own and returns its index once committed. When the
// audited change is itself a write, call [Append] on the Repository of the unit of work that
// writes it instead, so both commit together.
func (l *Log) Append(ctx context.Context, e Entry) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	var index int64
	err := l.st.Update(ctx, func(tx Tx) error {
		var err error
		index, err = Append(ctx, tx.Audit(), e)
		return err
	})
	if err != nil {
		return 0, err
	}
	return index, nil
}

// Size returns the number of committed entries.
func (l *Log) Size(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := l.st.View(ctx, func(tx Tx) error {
		var err error
		n, err = tx.Audit().Size(ctx)
		return err
	})
	return n, err
}
