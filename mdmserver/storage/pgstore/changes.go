package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// changesChannel is the channel every commit with changes notifies.
const changesChannel = "hale_changes"

// Change is one committed write to a followed bucket: the key written or deleted, and the
// Origin of the Store that wrote it.
type Change struct {
	Seq    int64
	Bucket string
	Key    []byte
	Origin string
}

// WithChangeFeed records every write to the named buckets in the change feed, for the other
// replicas to follow (Follow).
func WithChangeFeed(buckets ...[]byte) Option {
	return func(s *Store) {
		if s.followed == nil {
			s.followed = map[string]bool{}
		}
		for _, b := range buckets {
			s.followed[string(b)] = true
		}
	}
}

// record notes a write to bucket/key when the bucket is followed.
func (t *kvTx) record(bucket string, key []byte) {
	if !t.followed[bucket] {
		return
	}
	if t.changed == nil {
		t.changed = map[[2]string]bool{}
	}
	t.changed[[2]string{bucket, string(key)}] = true
}

// writeChanges adds the transaction's changes to the feed and notifies the followers, at
// commit (which makes the notification visible with the rows).
func (t *kvTx) writeChanges() error {
	if len(t.changed) == 0 {
		return nil
	}
	buckets := make([]string, 0, len(t.changed))
	keys := make([][]byte, 0, len(t.changed))
	for c := range t.changed {
		buckets = append(buckets, c[0])
		keys = append(keys, []byte(c[1]))
	}
	return insertChanges(t.ctx, t.tx, t.origin, buckets, keys)
}

// insertChanges adds changes made by the Store named origin to the feed in tx and notifies the followers when tx commits.
func insertChanges(ctx context.Context, tx pgx.Tx, origin string, buckets []string, keys [][]byte) error {
	if _, err := tx.Exec(ctx, "INSERT INTO hale_changes (bucket, key, origin) SELECT b, k, $3 FROM unnest($1::text[], $2::bytea[]) AS c(b, k)", buckets, keys, origin); err != nil {
		return fmt.Errorf("pgstore: change feed: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", changesChannel); err != nil {
		return fmt.Errorf("pgstore: change feed: %w", err)
	}
	return nil
}

// CABucket is the change feed's name for a table of the CA database (WithChangeFeed follows
// it like a bucket): a certificate revoked on one replica is refused by the others.
func CABucket(table string) []byte { return []byte("ca/" + table) }

// ErrResync is given to a Follow's apply when changes it has not applied were pruned: the
// follower must reload everything it keeps, then go on from the position it is given.
var ErrResync = errors.New("pgstore: the change feed was pruned past this follower's position; reload")

// FeedPosition returns the seq of the latest change: a follower that loads its state after
// reading it, then follows from it, misses nothing.
func (s *Store) FeedPosition(ctx context.Context) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq), (SELECT pruned_through FROM hale_changes_pruned)) FROM hale_changes").Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("pgstore: change feed position: %w", err)
	}
	return seq, nil
}

// Follower applies the change feed from a position: at once on each notification, and at
// least every Poll otherwise (a lost notification, a reconnect).
type Follower struct {
	// Apply applies a batch of changes in seq order. An error stops the batch; it is retried.
	Apply func(ctx context.Context, changes []Change) error
	// Resync reloads everything the follower keeps, when changes it had not applied were
	// pruned, and returns nil when done; following goes on from the feed's position before it.
	Resync func(ctx context.Context) error
	// CaughtUp is told each time the follower has applied every change committed before the
	// instant it is given: the replica's state is that fresh.
	CaughtUp func(at time.Time)
	// Poll is the longest time between two reads of the feed (default 1 s).
	Poll time.Duration
}

// feedCoalesce is how long a follower waits after a notification before it reads the feed.
const feedCoalesce = 5 * time.Millisecond

// feedPage is how many changes a follower reads at once.
const feedPage = 1000

// Follow applies the change feed from position from until ctx ends, reconnecting as needed. It
// returns ctx's error.
func (s *Store) Follow(ctx context.Context, from int64, f Follower) error {
	if f.Poll <= 0 {
		f.Poll = time.Second
	}
	for ctx.Err() == nil {
		err := s.follow(ctx, &from, f)
		if ctx.Err() == nil {
			s.log.Warn("change feed: following stopped; reconnecting", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(f.Poll):
			}
		}
	}
	return ctx.Err()
}

// follow listens on one connection and applies changes until an error.
func (s *Store) follow(ctx context.Context, from *int64, f Follower) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return err
	}
	for {
		// The time before the read: every change committed before it is in what we read.
		started := time.Now()
		if err := s.catchUp(ctx, conn, from, f); err != nil {
			return err
		}
		if f.CaughtUp != nil {
			f.CaughtUp(started)
		}
		wctx, cancel := context.WithTimeout(ctx, f.Poll)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if err == nil {
			// Commits come in bursts under load: one read a few milliseconds after the first
			// notification takes the burst, rather than a read per commit.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(feedCoalesce):
			}
		}
	}
}

// catchUp applies every change after *from.
func (s *Store) catchUp(ctx context.Context, conn *pgx.Conn, from *int64, f Follower) error {
	for {
		var pruned int64
		if err := conn.QueryRow(ctx, "SELECT pruned_through FROM hale_changes_pruned").Scan(&pruned); err != nil {
			return err
		}
		if *from < pruned {
			pos, err := s.FeedPosition(ctx)
			if err != nil {
				return err
			}
			if err := f.Resync(ctx); err != nil {
				return fmt.Errorf("%w: %w", ErrResync, err)
			}
			*from = pos
		}
		rows, err := conn.Query(ctx, "SELECT seq, bucket, key, origin FROM hale_changes WHERE seq > $1 ORDER BY seq LIMIT $2", *from, feedPage)
		if err != nil {
			return err
		}
		changes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Change])
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil
		}
		last := changes[len(changes)-1].Seq // before Apply, which may reuse the slice
		if err := f.Apply(ctx, changes); err != nil {
			return err
		}
		*from = last
		if len(changes) < feedPage {
			return nil
		}
	}
}

// PruneChanges deletes the changes older than keep, and returns how many it deleted. One
// replica runs it (the background lease's holder).
func (s *Store) PruneChanges(ctx context.Context, keep time.Duration) (int64, error) {
	var n, through int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `WITH gone AS (DELETE FROM hale_changes WHERE at < now() - make_interval(secs => $1) RETURNING seq)
			SELECT count(*), coalesce(max(seq), 0) FROM gone`, keep.Seconds()).Scan(&n, &through)
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE hale_changes_pruned SET pruned_through = greatest(pruned_through, $1)", through)
		return err
	})
	return n, err
}
