package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// openStore opens where the server keeps its state, with nanomdm's storage and the CA's
// database on the same backend: a PostgreSQL database when Config.Database is set, else bbolt
// in DATA/hale.db.
func (s *Server) openStore(ctx context.Context, o options) error {
	if s.cfg.Database != "" {
		return s.openPostgres(ctx, o)
	}
	bolt, err := boltstore.Open(s.cfg.path("hale.db"), boltstore.WithLogger(s.log.With("component", "store")))
	if err != nil {
		return err
	}
	s.store, s.snapshots = bolt, bolt
	if s.mdmStore = o.mdmStorage; s.mdmStore == nil {
		if s.mdmStore, err = boltstore.NewMDMStorage(bolt, boltstore.WithCommandSealer(s.key)); err != nil {
			return fmt.Errorf("nanomdm storage: %w", err)
		}
	}
	// The CA keeps its database in hale.db. One left in DATA/ca/ca.db by an older Hale moves in
	// first, or the server does not start: a CA without its revocations would trust revoked
	// certificates again.
	if _, err = bolt.ImportCADB(filepath.Join(s.cfg.path("ca"), "ca.db")); err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	s.caDB = bolt.CADB()
	return nil
}

// openPostgres opens the PostgreSQL database, migrating its schema, and takes the server lease:
// one mdmserver serves a database at a time; a second one refuses to start until the first has
// stopped (or died: PostgreSQL frees the lease with its connection).
func (s *Server) openPostgres(ctx context.Context, o options) error {
	pg, err := pgstore.Open(ctx, s.cfg.Database, pgstore.WithLogger(s.log.With("component", "store")),
		pgstore.WithChangeFeed(followedBuckets...))
	if err != nil {
		return err
	}
	s.store = pg
	if err := s.checkDataDirFor(ctx, pg); err != nil {
		return err
	}
	if s.isAccessReplica() {
		// Read before the decisions are loaded: what commits during the load is applied after.
		if s.feedFrom, err = pg.FeedPosition(ctx); err != nil {
			return err
		}
	} else if s.lease, err = s.takeLease(ctx, pg, o.standby); err != nil {
		return err
	} else {
		// Should the lease be lost without this server noticing yet, its writes fail rather
		// than land beside the new holder's.
		pg.FenceWrites(s.lease.Epoch())
	}
	if s.mdmStore = o.mdmStorage; s.mdmStore == nil {
		if s.mdmStore, err = pgmdm.New(pg.SQL(), pgmdm.WithCommandSealer(s.key)); err != nil {
			return fmt.Errorf("nanomdm storage: %w", err)
		}
	}
	// A CA database an older Hale left in the data directory belongs to a bbolt install: move
	// that install with `mdmserver migrate`, or the CA would forget its revocations.
	if _, err := os.Stat(filepath.Join(s.cfg.path("ca"), "ca.db")); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("certificate authority: %s holds a bbolt CA database; this server keeps it in PostgreSQL", filepath.Join(s.cfg.path("ca"), "ca.db"))
	}
	s.caDB = pg.CADB()
	return nil
}

// checkDataDirFor refuses to start on a database in use without the data directory that goes
// with it: a server started with an empty one would make a CA and an audit key of its own,
// whose certificates no device trusts and whose checkpoints no auditor's key verifies. It also
// refuses a database an interrupted `mdmserver migrate` left half-filled.
func (s *Server) checkDataDirFor(ctx context.Context, pg *pgstore.Store) error {
	records, enrollments, err := pg.Holdings(ctx)
	if err != nil {
		return err
	}
	if !records {
		if enrollments {
			return errors.New("the database holds Apple enrollments but no Hale records: an interrupted `mdmserver migrate`? " +
				"drop the database and migrate again")
		}
		return nil // a new database: this server sets it up
	}
	for _, name := range []string{"ca", "audit.key.sealed"} {
		if _, err := os.Stat(s.cfg.path(name)); err != nil {
			return fmt.Errorf("the database holds Hale's state, but the data directory %s has no %s: "+
				"start every server with a copy of the first server's data directory (its ca/ and audit key) and its master key", s.cfg.DataDir, name)
		}
	}
	return nil
}

// leaseRetry is how often a standby tries to take the server lease.
const leaseRetry = 2 * time.Second

// takeLease takes the server lease; while another server holds it, it waits until standby ends
// (a nil standby: it does not wait).
func (s *Server) takeLease(ctx context.Context, pg *pgstore.Store, standby context.Context) (*pgstore.Lease, error) {
	for waiting := false; ; waiting = true {
		lease, err := pg.TryLease(ctx, pgstore.ServerLease)
		if !errors.Is(err, pgstore.ErrLeaseHeld) {
			if err == nil && waiting {
				s.log.Info("standby: took the database lease; starting")
			}
			return lease, err
		}
		if standby == nil {
			return nil, errors.New("another mdmserver is serving this database: one server per database (start this one with --standby to take over when it stops)")
		}
		if !waiting {
			s.log.Warn("standby: another mdmserver serves this database; waiting to take over")
		}
		select {
		case <-standby.Done():
			return nil, fmt.Errorf("standby: stopped before taking over: %w", standby.Err())
		case <-time.After(leaseRetry):
		}
	}
}

// leaseLost is closed when the server lost its PostgreSQL lease (nil, never closed, on bbolt).
func (s *Server) leaseLost() <-chan struct{} {
	if s.lease == nil {
		return nil
	}
	return s.lease.Lost()
}
