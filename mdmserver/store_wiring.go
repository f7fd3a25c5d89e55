package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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

// openPostgres opens the PostgreSQL database, migrating its schema. Any number of servers may
// serve one database: each unit of work checks its rules under the database's writer lock, and
// each server follows the others' changes from the feed (followChanges).
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
	// Read before memory is loaded: what other servers commit during the load is applied after.
	if s.feedFrom, err = pg.FeedPosition(ctx); err != nil {
		return err
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

// leaseRetry is how often a server tries to take the background lease.
const leaseRetry = 2 * time.Second

// holdBackgroundLease runs the cluster's background work (startBackground) whenever this server
// holds the background lease, until ctx ends: it tries to take the lease every leaseRetry, and
// when its holder dies or is cut off from the database PostgreSQL frees the lease and another
// server takes it within seconds. A holder that loses it stops its background work and tries
// again; it goes on serving requests meanwhile.
func (s *Server) holdBackgroundLease(ctx context.Context) {
	pg := s.store.(*pgstore.Store)
	for ctx.Err() == nil {
		lease, err := pg.TryLease(ctx, pgstore.BackgroundLease)
		if err != nil {
			if !errors.Is(err, pgstore.ErrLeaseHeld) && ctx.Err() == nil {
				s.log.Warn("background lease: cannot take it; retrying", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(leaseRetry):
			}
			continue
		}
		s.log.Info("background lease taken: this server runs the cluster's background work")
		s.backgroundLeader.Set(1)
		bctx, stop := context.WithCancel(ctx)
		var work sync.WaitGroup
		s.startBackground(bctx, &work)
		select {
		case <-ctx.Done():
		case <-lease.Lost():
			s.log.Warn("background lease lost (the database connection failed): another server takes the background work over")
		}
		stop()
		work.Wait()
		s.graceWarn.Follow()
		s.backgroundLeader.Set(0)
		lease.Release()
	}
}
