package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeaseHeld is returned by TryLease when another process holds the lease.
var ErrLeaseHeld = errors.New("pgstore: the lease is held by another process")

// BackgroundLease is the lease of the cluster's background work: of the servers sharing a
// database, the one holding it runs the periodic work that must run once (sweeps, delivery of
// security events, key rotation); the others take it over when it is lost.
const BackgroundLease int64 = 0x68616c657372760a // "halesrv\n"

// leaseCheck is how often a lease's connection is checked; a holder learns of its loss within
// about this long (plus leaseTimeout), and PostgreSQL frees the lock of a dead holder as soon as
// its connection closes.
const (
	leaseCheck   = 2 * time.Second
	leaseTimeout = 5 * time.Second
)

// Lease is a session advisory lock held on a connection of its own, for as long as its holder
// runs. PostgreSQL releases it when that connection ends, so a holder killed with kill -9, or cut
// off from the database, loses it within seconds, and another process may take it.
type Lease struct {
	conn *pgx.Conn
	key  int64
	lost chan struct{}
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// TryLease takes the lease key, or returns ErrLeaseHeld when another session holds it.
func (s *Store) TryLease(ctx context.Context, key int64) (*Lease, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("pgstore: lease: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("pgstore: lease: %w", err)
		}
		return nil, ErrLeaseHeld
	}
	l := &Lease{conn: conn, key: key, lost: make(chan struct{}), stop: make(chan struct{})}
	l.done.Go(l.watch)
	return l, nil
}

// watch checks the lease's connection until Release, and closes lost when it fails: the lock may
// be someone else's by now.
func (l *Lease) watch() {
	t := time.NewTicker(leaseCheck)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			close(l.lost)
			return
		}
	}
}

// Lost is closed when the lease's connection failed: the holder must stop what the lease
// protects.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up and closes its connection.
func (l *Lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		l.done.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		defer cancel()
		_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key)
		_ = l.conn.Close(ctx)
	})
}
