package storagetest

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testAgentCommands is the contract of agentcmd.Repository, and the queue's rules over it:
// enqueue, long-poll delivery, results and the state counts the metrics read.
func testAgentCommands(t *testing.T, open Opener) {
	t.Run("contract", func(t *testing.T) { agentCommandsContract(t, open) })
	t.Run("long poll wakes on enqueue", func(t *testing.T) { agentLongPoll(t, open) })
	t.Run("redelivered until complete, then idempotent", func(t *testing.T) { agentRedelivery(t, open) })
	t.Run("wipe result states", func(t *testing.T) { agentWipeResultStates(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { agentRollback(t, open) })
	t.Run("concurrent results", func(t *testing.T) { agentConcurrentResults(t, open) })
	t.Run("state counts", func(t *testing.T) { agentStateCounts(t, open) })
	t.Run("survives restart", func(t *testing.T) { agentSurvivesRestart(t, open) })
}

// agentQueue is the agent command queue on st, as the server makes it.
func agentQueue(st storage.Store) *agentcmd.Queue {
	return agentcmd.New(storage.Scope(st, func(tx storage.Tx) agentcmd.Tx { return tx }))
}

func agentCommandsContract(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cmds := []agentcmd.Command{
		{ID: "c_2", DeviceID: "d1", Type: agentcmd.TypeWipe, Mode: "selective", Reason: "stolen", IssuedAt: t0, IssuedBy: "sec",
			ManagedData: []string{"~/.app"}, State: agentcmd.StateDelivered, DeliveredAt: t0.Add(time.Second)},
		{ID: "c_1", DeviceID: "d1", Type: agentcmd.TypeLock, IssuedAt: t0.Add(time.Minute), State: agentcmd.StateAcknowledged,
			FinishedAt: t0.Add(time.Hour), Result: &agentcmd.Result{Status: agentcmd.ResultDone, Detail: "locked"}},
		{ID: "c_3", DeviceID: "d10", Type: agentcmd.TypeLock, IssuedAt: t0, State: agentcmd.StateQueued},
	}
	err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range cmds {
			if err := tx.AgentCommands().PutCommand(ctx, &cmds[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.AgentCommands()
		got, err := r.Command(ctx, "d1", "c_2")
		if err != nil || !sameJSON(got, cmds[0]) {
			t.Errorf("Command = %+v, %v; want %+v", got, err, cmds[0])
		}
		got.ManagedData[0] = "changed" // the caller's copy
		if again, _ := r.Command(ctx, "d1", "c_2"); again.ManagedData[0] != "~/.app" {
			t.Error("changing a returned command changed the stored one")
		}
		if _, err := r.Command(ctx, "d1", "c_3"); !errors.Is(err, agentcmd.ErrNotFound) {
			t.Errorf("another device's command: %v, want ErrNotFound", err)
		}
		list, err := r.Commands(ctx, "d1")
		if err != nil || len(list) != 2 || list[0].ID != "c_1" || list[1].ID != "c_2" || !sameJSON(list[0], cmds[1]) {
			t.Errorf("Commands(d1) = %+v, %v; want c_1, c_2 in ID order", list, err)
		}
		if list, _ := r.Commands(ctx, "d"); len(list) != 0 {
			t.Errorf("Commands(d) matched another device's prefix: %+v", list)
		}
		if err := r.PutCommand(ctx, &cmds[2]); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutCommand in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The queue lists oldest first.
	if list, _ := agentQueue(st).List(ctx, "d1"); len(list) != 2 || list[0].ID != "c_2" {
		t.Errorf("List = %+v, want oldest (c_2) first", list)
	}
}

func agentLongPoll(t *testing.T, open Opener) {
	q := agentQueue(Fresh(t, open))
	ctx := context.Background()
	got := make(chan []agentcmd.Command, 1)
	start := time.Now()
	go func() {
		cmds, _ := q.Wait(ctx, "d1", 10*time.Second)
		got <- cmds
	}()
	time.Sleep(50 * time.Millisecond)
	c, err := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeWipe, Mode: "selective", ManagedData: []string{"/srv/phi"}})
	if err != nil {
		t.Fatal(err)
	}
	cmds := <-got
	if len(cmds) != 1 || cmds[0].ID != c.ID || cmds[0].State != agentcmd.StateDelivered || time.Since(start) > 5*time.Second {
		t.Fatalf("long poll got %+v after %v", cmds, time.Since(start))
	}
	// Another device's poll does not see it, and times out empty.
	if cmds, _ := q.Wait(ctx, "d2", 20*time.Millisecond); len(cmds) != 0 {
		t.Fatalf("foreign device got %+v", cmds)
	}
}

func agentRedelivery(t *testing.T, open Opener) {
	q := agentQueue(Fresh(t, open))
	ctx := context.Background()
	c, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeLock})
	for i := 0; i < 2; i++ {
		if cmds, _ := q.Wait(ctx, "d1", 0); len(cmds) != 1 {
			t.Fatalf("poll %d: %+v", i, cmds)
		}
	}
	if _, _, err := q.Complete(ctx, "d1", c.ID, agentcmd.Result{Status: "maybe"}); !errors.Is(err, agentcmd.ErrInvalid) {
		t.Fatalf("bad status: %v", err)
	}
	if _, _, err := q.Complete(ctx, "d2", c.ID, agentcmd.Result{Status: agentcmd.ResultDone}); !errors.Is(err, agentcmd.ErrNotFound) {
		t.Fatalf("another device completed it: %v", err)
	}
	cmd, first, err := q.Complete(ctx, "d1", c.ID, agentcmd.Result{Status: agentcmd.ResultDone, Detail: "locked 2 sessions"})
	if err != nil || !first || cmd.State != agentcmd.StateAcknowledged {
		t.Fatalf("complete: %+v %v %v", cmd, first, err)
	}
	cmd, first, _ = q.Complete(ctx, "d1", c.ID, agentcmd.Result{Status: agentcmd.ResultFailed})
	if first || cmd.State != agentcmd.StateAcknowledged {
		t.Fatalf("second report changed the command: %+v", cmd)
	}
	if cmds, _ := q.Wait(ctx, "d1", 0); len(cmds) != 0 {
		t.Fatalf("finished command redelivered: %+v", cmds)
	}
	if _, err := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: "erase-everything"}); !errors.Is(err, agentcmd.ErrInvalid) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := q.Enqueue(ctx, agentcmd.Command{ID: c.ID, DeviceID: "d1", Type: agentcmd.TypeLock}); !errors.Is(err, agentcmd.ErrInvalid) {
		t.Fatalf("a second command under an existing ID: %v", err)
	}
}

// A wipe's state follows its paths: done only when nothing was refused or failed; a result that
// says done but lists a refused path is partial; only a wipe can be partial.
func agentWipeResultStates(t *testing.T, open Opener) {
	q := agentQueue(Fresh(t, open))
	ctx := context.Background()
	refused := []agentcmd.PathResult{{Path: "/home/a/.app", Outcome: agentcmd.OutcomeRemoved}, {Path: "/root/.app", Outcome: agentcmd.OutcomeRefused, Reason: "outside the roots"}}
	for _, tc := range []struct {
		typ    string
		res    agentcmd.Result
		state  string
		status string
	}{
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultDone, Paths: refused[:1]}, agentcmd.StateAcknowledged, agentcmd.ResultDone},
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultDone, Paths: refused}, agentcmd.StatePartial, agentcmd.ResultPartial},
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultPartial, Paths: refused}, agentcmd.StatePartial, agentcmd.ResultPartial},
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultDone, Paths: []agentcmd.PathResult{{Path: "/x", Outcome: agentcmd.OutcomeFailed}}}, agentcmd.StatePartial, agentcmd.ResultPartial},
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultFailed}, agentcmd.StateError, agentcmd.ResultFailed},
		{agentcmd.TypeWipe, agentcmd.Result{Status: agentcmd.ResultDone, Removed: []string{"/srv/phi"}}, agentcmd.StateAcknowledged, agentcmd.ResultDone}, // an agent before paths
	} {
		c, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: tc.typ, Mode: "selective"})
		cmd, _, err := q.Complete(ctx, "d1", c.ID, tc.res)
		if err != nil || cmd.State != tc.state || cmd.Result.Status != tc.status || !cmd.Finished() {
			t.Errorf("%+v: %v %+v", tc.res, err, cmd)
		}
	}
	lock, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeLock})
	for _, bad := range []agentcmd.Result{
		{Status: agentcmd.ResultPartial},
		{Status: agentcmd.ResultDone, Paths: []agentcmd.PathResult{{Path: "/x", Outcome: "gone"}}},
		{Status: agentcmd.ResultDone, Paths: []agentcmd.PathResult{{Outcome: agentcmd.OutcomeRemoved}}},
		{Status: agentcmd.ResultDone, Paths: make([]agentcmd.PathResult, agentcmd.MaxResultPaths+1)},
	} {
		if _, _, err := q.Complete(ctx, "d1", lock.ID, bad); !errors.Is(err, agentcmd.ErrInvalid) {
			t.Errorf("%+v accepted: %v", bad.Status, err)
		}
	}
	if cmd, _ := q.Get(ctx, "d1", lock.ID); cmd.Finished() {
		t.Fatalf("a refused result finished the command: %+v", cmd)
	}
}

// completeWith records an agent's result as the server does: Complete and, when the result is
// first recorded, also (its audit entry), in one unit of work.
func completeWith(st storage.Store, deviceID, id string, res agentcmd.Result, also func(*agentcmd.Command) error) (cmd *agentcmd.Command, first bool, err error) {
	ctx := context.Background()
	err = st.Update(ctx, func(tx storage.Tx) error {
		var err error
		cmd, first, err = agentcmd.Complete(ctx, tx.AgentCommands(), deviceID, id, res, time.Now())
		if err != nil || !first {
			return err
		}
		return also(cmd)
	})
	if err != nil {
		return nil, false, err
	}
	return cmd, first, nil
}

// A result whose unit of work fails (its audit entry could not be written) is not recorded: the
// command stays open for the agent to report again, and no count moves.
func agentRollback(t *testing.T, open Opener) {
	st := Fresh(t, open)
	q := agentQueue(st)
	ctx := context.Background()
	c, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeWipe})
	before, _ := q.StateCounts(ctx)
	boom := errors.New("boom")
	ran := false
	_, _, err := completeWith(st, "d1", c.ID, agentcmd.Result{Status: agentcmd.ResultDone}, func(cmd *agentcmd.Command) error {
		ran = cmd.State == agentcmd.StateAcknowledged
		return boom
	})
	if !errors.Is(err, boom) || !ran {
		t.Fatalf("Complete = %v (the unit of work saw the acknowledged command: %v), want boom", err, ran)
	}
	if cmd, _ := q.Get(ctx, "d1", c.ID); cmd.Finished() || cmd.Result != nil {
		t.Fatalf("a failed unit of work recorded the result: %+v", cmd)
	}
	if after, _ := q.StateCounts(ctx); !maps.Equal(after, before) {
		t.Fatalf("a failed unit of work moved the counts: %v, was %v", after, before)
	}
	if _, first, err := q.Complete(ctx, "d1", c.ID, agentcmd.Result{Status: agentcmd.ResultDone}); err != nil || !first {
		t.Fatalf("the result reported again: first %v, %v", first, err)
	}
}

// An agent resending its result while the first is still being stored: exactly one report is
// the first, and what commits with it is written once (run under -race).
func agentConcurrentResults(t *testing.T, open Opener) {
	st := Fresh(t, open)
	q := agentQueue(st)
	ctx := context.Background()
	c, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeLock})
	var firsts, callbacks atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, first, err := completeWith(st, "d1", c.ID, agentcmd.Result{Status: agentcmd.ResultDone}, func(*agentcmd.Command) error {
				callbacks.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		})
		wg.Go(func() { _, _ = q.Wait(ctx, "d1", 0) })
	}
	wg.Wait()
	if firsts.Load() != 1 || callbacks.Load() != 1 {
		t.Fatalf("%d first reports, %d callbacks; want 1 and 1", firsts.Load(), callbacks.Load())
	}
	if got, _ := q.StateCounts(ctx); got[agentcmd.StateAcknowledged] != 1 || got[agentcmd.StateQueued]+got[agentcmd.StateDelivered] != 0 {
		t.Fatalf("counts %v", got)
	}
}

// The in-memory state counts follow enqueue, delivery and results, and a queue opened again on
// the same data counts the same.
func agentStateCounts(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	q := agentQueue(st)
	ctx := context.Background()
	want := map[string]int64{agentcmd.StateQueued: 0, agentcmd.StateDelivered: 0, agentcmd.StateAcknowledged: 0, agentcmd.StatePartial: 0, agentcmd.StateError: 0}
	check := func(step string) {
		t.Helper()
		if got, err := q.StateCounts(ctx); err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: %v, %v; want %v", step, got, err, want)
		}
	}
	check("empty")
	a, _ := q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeLock})
	q.Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeWipe})
	q.Enqueue(ctx, agentcmd.Command{DeviceID: "d2", Type: agentcmd.TypeLock})
	want[agentcmd.StateQueued] = 3
	check("enqueued")
	q.Wait(ctx, "d1", 0)
	q.Wait(ctx, "d1", 0) // redelivery moves nothing
	want[agentcmd.StateQueued], want[agentcmd.StateDelivered] = 1, 2
	check("delivered")
	q.Complete(ctx, "d1", a.ID, agentcmd.Result{Status: agentcmd.ResultDone})
	q.Complete(ctx, "d1", a.ID, agentcmd.Result{Status: agentcmd.ResultFailed}) // repeated: changes nothing
	q.Complete(ctx, "d1", "c_none", agentcmd.Result{Status: agentcmd.ResultDone})
	want[agentcmd.StateDelivered], want[agentcmd.StateAcknowledged] = 1, 1
	check("completed")
	st = Reopen(t, open, st, dir)
	if got, err := agentQueue(st).StateCounts(ctx); err != nil || !maps.Equal(got, want) {
		t.Fatalf("reopened: %v, %v; want %v", got, err, want)
	}
}

// A queued command survives closing and reopening the store (a server restart).
func agentSurvivesRestart(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	ctx := context.Background()
	c, _ := agentQueue(st).Enqueue(ctx, agentcmd.Command{DeviceID: "d1", Type: agentcmd.TypeWipe})
	st = Reopen(t, open, st, dir)
	if cmds, _ := agentQueue(st).Wait(ctx, "d1", 0); len(cmds) != 1 || cmds[0].ID != c.ID {
		t.Fatalf("after restart: %+v", cmds)
	}
}
