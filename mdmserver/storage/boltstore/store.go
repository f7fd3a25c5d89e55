package boltstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultOpenTimeout is how long [Open] waits for the file lock when no
// [WithOpenTimeout] is given.
const DefaultOpenTimeout = 2 * time.Second

// metaBucket holds the store's own bookkeeping (the Ping marker).
const metaBucket = "meta"

var (
	// ErrClosed is returned (wrapped) by operations on a closed [Store].
	// It is bbolt's own "database not open" error, so errors.Is matches
	// errors coming straight from bbolt too.
	ErrClosed = berrors.ErrDatabaseNotOpen

	// ErrLocked is returned by [Open] when another process (or another
	// Store in this process) holds the database file.
	ErrLocked = errors.New("store: database file is locked by another process")
)

// Store is Hale's bbolt database file.
// Its methods are safe for concurrent use.
type Store struct {
	db     *bbolt.DB
	logger *slog.Logger
	closed atomic.Bool
	// tallies count the command records per state in memory (statecount.go).
	tallies tallies
}

type config struct {
	logger  *slog.Logger
	timeout time.Duration
}

// Option configures [Open].
type Option func(*config)

// WithLogger sets the logger. By default nothing is logged.
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) {
		if logger != nil {
			c.logger = logger
		}
	}
}

// WithOpenTimeout sets how long Open waits for the database file lock
// before failing with [ErrLocked]. Values <= 0 are ignored, because bbolt
// would then wait forever.
func WithOpenTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// Open opens the bbolt database at path, creating it (mode 0600) and its
// parent directory (mode 0700) if missing. If another process holds the
// file, Open fails with [ErrLocked] after the open timeout instead of
// waiting forever.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := &config{
		logger:  slog.New(slog.DiscardHandler),
		timeout: DefaultOpenTimeout,
	}
	for _, opt := range opts {
		opt(cfg)
	}
	if path == "" {
		return nil, errors.New("store: open: empty database path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: creating data directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		cfg.logger.Warn("data directory is accessible to other users; restrict it with chmod 700",
			"dir", dir, "mode", fi.Mode().Perm().String())
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      cfg.timeout,
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %s; stop the other mdmserver or use another --data directory): %w",
			ErrLocked, path, cfg.timeout, err)
	} else if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	// bbolt applies the mode only when it creates the file; an older or
	// copied-in file may be readable by others, and it holds enrollment
	// secrets.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: restricting %s to mode 0600: %w", path, err)
		}
		cfg.logger.Warn("database file was accessible to other users; changed its mode to 0600",
			"path", path, "was", fi.Mode().Perm().String())
	}
	// Batched writers wait at most this long for company: shorter than bbolt's 10ms default
	// so a lone device's check-in is not held back, long enough to share an fsync under load.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{db: db, logger: cfg.logger}
	names := []string{metaBucket}
	for _, b := range kvstore.Buckets {
		names = append(names, string(b))
	}
	if err := s.createBuckets(names...); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrateWipes(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.countStates(); err != nil {
		db.Close()
		return nil, err
	}
	cfg.logger.Debug("store opened", "path", path)
	return s, nil
}

// createBuckets creates the named top-level buckets if they do not exist.
func (s *Store) createBuckets(names ...string) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range names {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: creating buckets: %w", err)
	}
	return nil
}

// DB returns the underlying bbolt database, for backend-specific tests and
// tools only: domain code goes through storage.Tx. Do not close it; use
// [Store.Close].
func (s *Store) DB() *bbolt.DB {
	return s.db
}

// Path returns the database file path.
func (s *Store) Path() string {
	return s.db.Path()
}

// Close closes the database. It waits for open bbolt transactions to end.
// Closing an already closed Store returns nil.
func (s *Store) Close() error {
	s.closed.Store(true)
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", s.db.Path(), err)
	}
	return nil
}

// Ping proves the store is open and writable by committing a tiny write to
// the meta bucket. It returns ctx's error if ctx ends first (the write
// still completes in the background).
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("store: ping: %w", ErrClosed)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(metaBucket))
			if b == nil {
				return fmt.Errorf("bucket %q missing", metaBucket)
			}
			return b.Put([]byte("ping"), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
		})
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("store: ping: %w", ctx.Err())
	case err := <-done:
		if err != nil {
			return fmt.Errorf("store: ping write: %w", err)
		}
		return nil
	}
}

// Check runs bbolt's consistency check over the whole file (page
// reachability, freelist, key order) in a read transaction and returns
// every problem found, joined, or nil.
func (s *Store) Check() error {
	var errs []error
	err := s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: check: %w", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("store: %s is inconsistent (restore from backup): %w", s.db.Path(), errors.Join(errs...))
	}
	return nil
}
