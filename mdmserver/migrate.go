package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgmdm"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// MigrateResult is what Migrate copied and verified.
type MigrateResult struct {
	// Buckets is how many keys each of Hale's buckets holds, in the source and (verified) in the
	// target; Keys is their sum.
	Buckets map[string]int64
	Keys    int64
	// CATables and CAEntries are the certificate authority's database; CAFileImported says it
	// was first moved into hale.db from the DATA/ca/ca.db an older Hale kept it in.
	CATables, CAEntries int64
	CAFileImported      bool
	// CheckIns is how many of nanomdm's check-in messages were replayed, for Enrollments
	// enrollments (Devices of them device channels).
	CheckIns, Enrollments, Devices int
	// CertAssociations are the enrollments' identity certificate hashes; NanoPushCerts the push
	// certificates in nanomdm's own storage (Hale keeps its own in a bucket).
	CertAssociations, NanoPushCerts int
	// UnlockTokens are the devices' unlock tokens (what ClearPasscode needs).
	UnlockTokens int
	// Queued is how many queued commands moved (one per enrollment and command); QueueDropped
	// how many were queued for disabled enrollments, which nanomdm does not migrate.
	Queued, QueueDropped int
	// AuditEntries is the size of the audit log, every entry verified in the target, and
	// Checkpoint its latest signed checkpoint, verified against it (zero when none was signed).
	AuditEntries int64
	Checkpoint   audit.Checkpoint
	// Elapsed is how long the whole migration took; of it, AppleElapsed nanomdm's state,
	// RecordsElapsed Hale's buckets and the CA's database, VerifyElapsed the verification.
	Elapsed, AppleElapsed, RecordsElapsed, VerifyElapsed time.Duration
}

// migrateConfig holds Migrate's options.
type migrateConfig struct {
	openTimeout time.Duration
	// afterApple runs between nanomdm's state and Hale's records: a test's way in, to make the
	// last step fail.
	afterApple func(context.Context) error
}

// MigrateOption configures Migrate.
type MigrateOption func(*migrateConfig)

// WithMigrateOpenTimeout sets how long Migrate waits for the bbolt file lock (held by a running
// server) before refusing.
func WithMigrateOpenTimeout(d time.Duration) MigrateOption {
	return func(c *migrateConfig) { c.openTimeout = d }
}

// Migrate copies the state of the data directory dataDir (its bbolt file, hale.db) into the
// empty PostgreSQL database at dsn (mdmserver migrate), then verifies the copy. It refuses a
// server running on the source (bbolt's file lock), a target holding any state, and a source
// whose audit log does not verify; it holds the database's background lease throughout, and a
// server started on the half-copied database refuses it (checkDataDirFor).
//
// The source's audit log is verified before anything is copied. A CA database an older Hale left
// in DATA/ca/ca.db is moved into hale.db first, as a bbolt server does at start.
//
// Nanomdm's enrollments, certificate associations and queued commands are written first; Hale's
// buckets and the CA's database then move in one transaction, the last step. A failure in
// between empties nanomdm's tables again, so the target is left as empty as it was found.
//
// The copy is then verified: every bucket's key count against the source, the CA's tables and
// entries, the queue, and the audit log (every entry and stored checkpoint, with DATA/audit.pub,
// and the latest checkpoint the same as the source's). The data directory's files (master key,
// CA key, audit keys) are not copied: the server on PostgreSQL still reads them from dataDir.
func Migrate(ctx context.Context, dataDir, dsn string, opts ...MigrateOption) (MigrateResult, error) {
	start := time.Now()
	cfg := migrateConfig{openTimeout: boltstore.DefaultOpenTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	var res MigrateResult
	dbPath := filepath.Join(dataDir, "hale.db")
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("migrate: %s has no hale.db: is it a data directory?", dataDir)
	} else if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	auditKey, err := os.ReadFile(filepath.Join(dataDir, "audit.pub"))
	if err != nil {
		return res, fmt.Errorf("migrate: the audit verifier key: %w", err)
	}
	bolt, err := boltstore.Open(dbPath, boltstore.WithOpenTimeout(cfg.openTimeout))
	if errors.Is(err, boltstore.ErrLocked) {
		return res, fmt.Errorf("migrate: a server is running on %s; stop it first: %w", dataDir, err)
	} else if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	defer bolt.Close()
	srcLog, err := openVerifiedAudit(ctx, bolt, string(auditKey))
	if err != nil {
		return res, fmt.Errorf("migrate: the audit log of %s does not verify, so nothing was copied: %w", dataDir, err)
	}
	srcLatest, err := srcLog.Latest(ctx)
	if err != nil && !errors.Is(err, audit.ErrNoCheckpoint) {
		return res, fmt.Errorf("migrate: %w", err)
	}
	// A CA database an older Hale kept in DATA/ca/ca.db moves into hale.db first, as a bbolt
	// server does at start (the file is renamed once copied); a server on PostgreSQL refuses to
	// start while that file is there.
	if res.CAFileImported, err = bolt.ImportCADB(filepath.Join(dataDir, "ca", "ca.db")); err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}

	pg, err := pgstore.Open(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	defer pg.Close()
	lease, err := pg.TryLease(ctx, pgstore.BackgroundLease)
	if errors.Is(err, pgstore.ErrLeaseHeld) {
		return res, errors.New("migrate: a server is running on the target database; migrate only into a new, empty database")
	} else if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	defer lease.Release()
	if err := pg.CheckEmpty(ctx); err != nil {
		return res, fmt.Errorf("migrate: refusing the target: %w; migrate only into a new, empty database", err)
	}
	// nanomdm's storage commits every statement of a replayed check-in on its own. Those commits
	// do not wait for the disk (synchronous_commit off, on connections of their own); the final
	// transaction, Hale's buckets, does, and its flush of the write-ahead log makes every earlier
	// commit durable too, before Migrate reports anything.
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	pcfg.MaxConns = replayWorkers
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	defer pool.Close()
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	mdmDst, err := pgmdm.New(sqlDB)
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	if err := copyAll(ctx, bolt, pg, mdmDst, cfg.afterApple, &res); err != nil {
		if rerr := mdmDst.Reset(context.WithoutCancel(ctx)); rerr != nil {
			return res, fmt.Errorf("migrate: %w; emptying the target again failed too (%w): drop the database before using it", err, rerr)
		}
		return res, fmt.Errorf("migrate: %w (the target is empty again)", err)
	}
	verifyStart := time.Now()
	if err := verifyMigrated(ctx, pg, mdmDst, string(auditKey), srcLatest, &res); err != nil {
		return res, fmt.Errorf("migrate: the copy does not verify; do not use the target database (drop it and migrate again): %w", err)
	}
	res.VerifyElapsed = time.Since(verifyStart)
	res.Elapsed = time.Since(start)
	return res, nil
}

// copyAll copies nanomdm's state, then Hale's buckets and the CA's database in one transaction.
func copyAll(ctx context.Context, bolt *boltstore.Store, pg *pgstore.Store, mdmDst *pgmdm.Storage, afterApple func(context.Context) error, res *MigrateResult) error {
	start := time.Now()
	if err := migrateMDM(ctx, bolt, mdmDst, res); err != nil {
		return fmt.Errorf("the Apple MDM state: %w", err)
	}
	if afterApple != nil {
		if err := afterApple(ctx); err != nil {
			return err
		}
	}
	res.AppleElapsed = time.Since(start)
	start = time.Now()
	defer func() { res.RecordsElapsed = time.Since(start) }()
	res.Buckets = map[string]int64{}
	return pg.Import(ctx, func(im *pgstore.Importer) error {
		return bolt.Export(func(ex *boltstore.Export) error {
			for _, name := range kvstore.Buckets {
				b, err := ex.Bucket(name)
				if err != nil {
					return err
				}
				want := int64(b.KeyN())
				n, err := im.Bucket(name, b.Sequence(), b.Next)
				if err != nil {
					return err
				}
				if n != want {
					return fmt.Errorf("bucket %s: copied %d keys of %d", name, n, want)
				}
				res.Buckets[string(name)] = n
				res.Keys += n
			}
			return ex.CA(func(t []byte) error {
				res.CATables++
				return im.CATable(t)
			}, func(t, k, v []byte) error {
				res.CAEntries++
				return im.CAEntry(t, k, v)
			})
		})
	})
}

// verifyMigrated reads the committed copy back: key counts per bucket, the CA's database,
// nanomdm's enrollments, associations and queue, and the audit log, verified with the data directory's key and ending at the source's
// latest checkpoint.
func verifyMigrated(ctx context.Context, pg *pgstore.Store, mdmDst *pgmdm.Storage, auditKey string, srcLatest []byte, res *MigrateResult) error {
	counts, err := pg.BucketCounts(ctx)
	if err != nil {
		return err
	}
	for _, name := range kvstore.Buckets {
		if got, want := counts[string(name)], res.Buckets[string(name)]; got != want {
			return fmt.Errorf("bucket %s holds %d keys in the target, %d in the source", name, got, want)
		}
	}
	if tables, entries, err := pg.CACount(ctx); err != nil {
		return err
	} else if tables != res.CATables || entries != res.CAEntries {
		return fmt.Errorf("the CA database holds %d tables and %d entries in the target, %d and %d in the source",
			tables, entries, res.CATables, res.CAEntries)
	}
	want := pgmdm.Counts{Enrollments: int64(res.Enrollments), Associations: int64(res.CertAssociations), Queued: int64(res.Queued)}
	if got, err := mdmDst.Count(ctx); err != nil {
		return err
	} else if got != want {
		return fmt.Errorf("nanomdm's tables hold %+v in the target, %+v were copied", got, want)
	}
	l, err := openVerifiedAudit(ctx, pg, auditKey)
	if err != nil {
		return fmt.Errorf("the audit log: %w", err)
	}
	if res.AuditEntries, err = l.Size(ctx); err != nil {
		return err
	}
	latest, err := l.Latest(ctx)
	switch {
	case srcLatest == nil && errors.Is(err, audit.ErrNoCheckpoint):
		return nil // never checkpointed: every entry verified, nothing more to compare
	case err != nil:
		return fmt.Errorf("the audit log's latest checkpoint: %w", err)
	case string(latest) != string(srcLatest):
		return errors.New("the audit log's latest checkpoint differs from the source's")
	}
	if res.Checkpoint, err = l.VerifyCheckpoint(ctx, latest); err != nil {
		return fmt.Errorf("the audit log's latest checkpoint: %w", err)
	}
	return nil
}
