package agentcmd

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func newQueue(t *testing.T) (*Queue, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	q, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	return q, path
}

func TestLongPollWakesOnEnqueue(t *testing.T) {
	q, _ := newQueue(t)
	ctx := context.Background()
	got := make(chan []Command, 1)
	start := time.Now()
	go func() {
		cmds, _ := q.Wait(ctx, "d1", 10*time.Second)
		got <- cmds
	}()
	time.Sleep(50 * time.Millisecond)
	c, err := q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeWipe, Mode: "selective", ManagedData: []string{"/srv/phi"}})
	if err != nil {
		t.Fatal(err)
	}
	cmds := <-got
	if len(cmds) != 1 || cmds[0].ID != c.ID || cmds[0].State != StateDelivered || time.Since(start) > 5*time.Second {
		t.Fatalf("long poll got %+v after %v", cmds, time.Since(start))
	}
	// Another device's poll does not see it, and times out empty.
	if cmds, _ := q.Wait(ctx, "d2", 20*time.Millisecond); len(cmds) != 0 {
		t.Fatalf("foreign device got %+v", cmds)
	}
}

func TestRedeliveredUntilCompleteThenIdempotent(t *testing.T) {
	q, _ := newQueue(t)
	ctx := context.Background()
	c, _ := q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeLock})
	for i := 0; i < 2; i++ {
		if cmds, _ := q.Wait(ctx, "d1", 0); len(cmds) != 1 {
			t.Fatalf("poll %d: %+v", i, cmds)
		}
	}
	if _, _, err := q.Complete(ctx, "d1", c.ID, Result{Status: "maybe"}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
	if _, _, err := q.Complete(ctx, "d2", c.ID, Result{Status: ResultDone}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another device completed it: %v", err)
	}
	cmd, first, err := q.Complete(ctx, "d1", c.ID, Result{Status: ResultDone, Detail: "locked 2 sessions"}, nil)
	if err != nil || !first || cmd.State != StateAcknowledged {
		t.Fatalf("complete: %+v %v %v", cmd, first, err)
	}
	cmd, first, _ = q.Complete(ctx, "d1", c.ID, Result{Status: ResultFailed}, nil)
	if first || cmd.State != StateAcknowledged {
		t.Fatalf("second report changed the command: %+v", cmd)
	}
	if cmds, _ := q.Wait(ctx, "d1", 0); len(cmds) != 0 {
		t.Fatalf("finished command redelivered: %+v", cmds)
	}
	if _, err := q.Enqueue(ctx, Command{DeviceID: "d1", Type: "erase-everything"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown type: %v", err)
	}
}

// A queued command survives closing and reopening the database (a server restart).
func TestSurvivesRestart(t *testing.T) {
	q, path := newQueue(t)
	ctx := context.Background()
	c, _ := q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeWipe})
	q.db.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q2, _ := New(db)
	if cmds, _ := q2.Wait(ctx, "d1", 0); len(cmds) != 1 || cmds[0].ID != c.ID {
		t.Fatalf("after restart: %+v", cmds)
	}
}

// A wipe's state follows its paths: done only when nothing was refused or failed; a result that
// says done but lists a refused path is partial; only a wipe can be partial.
func TestWipeResultStates(t *testing.T) {
	q, _ := newQueue(t)
	ctx := context.Background()
	refused := []PathResult{{Path: "/home/a/.app", Outcome: OutcomeRemoved}, {Path: "/root/.app", Outcome: OutcomeRefused, Reason: "outside the roots"}}
	for _, tc := range []struct {
		typ    string
		res    Result
		state  string
		status string
	}{
		{TypeWipe, Result{Status: ResultDone, Paths: refused[:1]}, StateAcknowledged, ResultDone},
		{TypeWipe, Result{Status: ResultDone, Paths: refused}, StatePartial, ResultPartial},
		{TypeWipe, Result{Status: ResultPartial, Paths: refused}, StatePartial, ResultPartial},
		{TypeWipe, Result{Status: ResultDone, Paths: []PathResult{{Path: "/x", Outcome: OutcomeFailed}}}, StatePartial, ResultPartial},
		{TypeWipe, Result{Status: ResultFailed}, StateError, ResultFailed},
		{TypeWipe, Result{Status: ResultDone, Removed: []string{"/srv/phi"}}, StateAcknowledged, ResultDone}, // an agent before paths
	} {
		c, _ := q.Enqueue(ctx, Command{DeviceID: "d1", Type: tc.typ, Mode: "selective"})
		cmd, _, err := q.Complete(ctx, "d1", c.ID, tc.res, nil)
		if err != nil || cmd.State != tc.state || cmd.Result.Status != tc.status || !cmd.Finished() {
			t.Errorf("%+v: %v %+v", tc.res, err, cmd)
		}
	}
	lock, _ := q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeLock})
	for _, bad := range []Result{
		{Status: ResultPartial},
		{Status: ResultDone, Paths: []PathResult{{Path: "/x", Outcome: "gone"}}},
		{Status: ResultDone, Paths: []PathResult{{Outcome: OutcomeRemoved}}},
		{Status: ResultDone, Paths: make([]PathResult, MaxResultPaths+1)},
	} {
		if _, _, err := q.Complete(ctx, "d1", lock.ID, bad, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v accepted: %v", bad.Status, err)
		}
	}
	if cmd, _ := q.Get(ctx, "d1", lock.ID); cmd.Finished() {
		t.Fatalf("a refused result finished the command: %+v", cmd)
	}
}
