package agentcmd_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/clustertest"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// twoQueues returns two Queues on one bbolt store: two servers on one database, one process.
func twoQueues(t *testing.T) (a, b *agentcmd.Queue) {
	st := clustertest.Bolt(t)
	return queueOn(st), queueOn(st)
}

// twoPostgresQueues returns two Queues, each on a store of its own, on one PostgreSQL database
// (skipped without HALE_TEST_POSTGRES, failed under CI).
func twoPostgresQueues(t *testing.T) (a, b *agentcmd.Queue) {
	sa, sb := clustertest.Postgres(t)
	return queueOn(sa), queueOn(sb)
}

// queueOn is a Queue on st, as the server builds it.
func queueOn(st storage.Store) *agentcmd.Queue {
	return agentcmd.New(storage.Scope(st, func(tx storage.Tx) agentcmd.Tx { return tx }))
}

type pollResult struct {
	cmds []agentcmd.Command
	err  error
	took time.Duration
}

// poll starts a long poll for dev on q and returns where its answer arrives.
func poll(q *agentcmd.Queue, dev string, wait time.Duration) <-chan pollResult {
	out := make(chan pollResult, 1)
	go func() {
		start := time.Now()
		cmds, err := q.Wait(context.Background(), dev, wait)
		out <- pollResult{cmds, err, time.Since(start)}
	}()
	return out
}

// stillWaiting fails the test when the poll answered within d.
func stillWaiting(t *testing.T, ch <-chan pollResult, d time.Duration, why string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: the poll answered after %s with %d commands; want it still waiting", why, r.took, len(r.cmds))
	case <-time.After(d):
	}
}

// waitPolls waits until q has a poll registered for dev. What it reads of the store after
// registering cannot miss a later command: the tests enqueue after this.
func waitPolls(t *testing.T, q *agentcmd.Queue, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for agentcmd.Waiting(q, dev) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no poll registered")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWakeKeysWakesAPollOnAnotherQueue(t *testing.T) {
	for name, open := range map[string]func(*testing.T) (a, b *agentcmd.Queue){"bolt": twoQueues, "postgres": twoPostgresQueues} {
		t.Run(name, func(t *testing.T) {
			a, b := open(t)
			ctx := context.Background()
			const long = 30 * time.Second
			got := poll(b, "dev-1", long)
			waitPolls(t, b, "dev-1")

			cmd, err := a.Enqueue(ctx, agentcmd.Command{DeviceID: "dev-1", Type: agentcmd.TypeLock, Reason: "lost"})
			if err != nil {
				t.Fatal(err)
			}
			// A's Enqueue wakes A's polls only: B's goes on waiting, as it did before WakeKeys.
			stillWaiting(t, got, 300*time.Millisecond, "before WakeKeys")

			if err := b.WakeKeys(ctx, agentcmd.StoreKey(cmd.DeviceID, cmd.ID)); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-got:
				if r.err != nil {
					t.Fatal(r.err)
				}
				if len(r.cmds) != 1 || r.cmds[0].ID != cmd.ID || r.cmds[0].State != agentcmd.StateDelivered {
					t.Fatalf("poll answered %+v, want command %s delivered", r.cmds, cmd.ID)
				}
				if r.took >= long {
					t.Fatalf("poll answered at its timeout (%s)", r.took)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the poll on B did not answer after B.WakeKeys")
			}
		})
	}
}

func TestWakeKeysIgnoresWhatIsNotAPendingCommand(t *testing.T) {
	a, b := twoQueues(t)
	ctx := context.Background()
	// A finished command of dev-1, and one of another device.
	done, err := a.Enqueue(ctx, agentcmd.Command{DeviceID: "dev-1", Type: agentcmd.TypeLock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Wait(ctx, "dev-1", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Complete(ctx, "dev-1", done.ID, agentcmd.Result{Status: agentcmd.ResultDone}); err != nil {
		t.Fatal(err)
	}
	other, err := a.Enqueue(ctx, agentcmd.Command{DeviceID: "dev-2", Type: agentcmd.TypeLock})
	if err != nil {
		t.Fatal(err)
	}

	got := poll(b, "dev-1", 30*time.Second)
	waitPolls(t, b, "dev-1")
	err = b.WakeKeys(ctx,
		agentcmd.StoreKey("dev-1", done.ID),  // finished: a result reported elsewhere
		agentcmd.StoreKey("dev-1", "c_gone"), // deleted, or never there
		agentcmd.StoreKey("dev-2", other.ID), // another device's
		[]byte("dev-1"), []byte{0}, []byte{}, // not command keys
		[]byte("dev-1\x00"), []byte("\x00c_1"), // half a key
	)
	if err != nil {
		t.Fatal(err)
	}
	stillWaiting(t, got, 300*time.Millisecond, "after keys that name no pending command of dev-1")

	// And a pending one does wake it.
	cmd, err := a.Enqueue(ctx, agentcmd.Command{DeviceID: "dev-1", Type: agentcmd.TypeWipe, Mode: "selective"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WakeKeys(ctx, agentcmd.StoreKey("dev-1", cmd.ID)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if len(r.cmds) != 1 || r.cmds[0].ID != cmd.ID {
			t.Fatalf("poll answered %+v, want only the wipe %s", r.cmds, cmd.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the poll did not answer after a pending command's key")
	}
}

func TestWakeKeysWithoutPollsReadsNothing(t *testing.T) {
	_, b := twoQueues(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a View would fail on a canceled context
	if err := b.WakeKeys(ctx, agentcmd.StoreKey("dev-1", "c_1")); err != nil {
		t.Fatalf("WakeKeys with no poll waiting read the store: %v", err)
	}
}

func FuzzSplitStoreKey(f *testing.F) {
	f.Add([]byte("dev-1\x00c_0123456789ab"))
	f.Add([]byte("\x00"))
	f.Add([]byte("dev\x00\x00c"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		dev, id, ok := agentcmd.SplitStoreKey(key)
		if !ok {
			return
		}
		if dev == "" || id == "" || bytes.IndexByte([]byte(dev), 0) >= 0 {
			t.Fatalf("SplitStoreKey(%q) = %q, %q", key, dev, id)
		}
		if got := agentcmd.StoreKey(dev, id); !bytes.Equal(got, key) {
			t.Fatalf("StoreKey(SplitStoreKey(%q)) = %q", key, got)
		}
	})
}

// The change feed's keys are what WakeKeys takes: server B follows the PostgreSQL change feed
// of the agent commands and hands it what server A wrote; B's poll answers with A's command.
func TestWakeKeysFromThePostgresChangeFeed(t *testing.T) {
	pgtest.ServerURL(t)
	dsn := pgtest.NewDatabase(t) // LISTEN channels are per database
	quiet := pgstore.WithLogger(slog.New(slog.DiscardHandler))
	var sts [2]*pgstore.Store
	for i := range sts {
		st, err := pgstore.Open(context.Background(), dsn, quiet, pgstore.WithChangeFeed(kvstore.BucketAgentCommands))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		sts[i] = st
	}
	a, b := queueOn(sts[0]), queueOn(sts[1])

	ctx, cancel := context.WithCancel(context.Background())
	from, err := sts[1].FeedPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sts[1].Follow(ctx, from, pgstore.Follower{
			Apply: func(ctx context.Context, changes []pgstore.Change) error {
				var keys [][]byte
				for _, c := range changes {
					if c.Bucket == string(kvstore.BucketAgentCommands) {
						keys = append(keys, c.Key)
					}
				}
				return b.WakeKeys(ctx, keys...)
			},
			Resync: func(context.Context) error { return nil },
			Poll:   time.Minute, // the notification, not the poll, must bring it
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	got := poll(b, "dev-1", 30*time.Second)
	waitPolls(t, b, "dev-1")
	cmd, err := a.Enqueue(context.Background(), agentcmd.Command{DeviceID: "dev-1", Type: agentcmd.TypeWipe, Mode: "selective"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil || len(r.cmds) != 1 || r.cmds[0].ID != cmd.ID {
			t.Fatalf("poll on B answered %+v, %v", r.cmds, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll on B did not answer after A's enqueue reached B through the change feed")
	}
}
