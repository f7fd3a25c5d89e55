package agentcmd

import (
	"context"
	"maps"
	"testing"
)

// The in-memory state counts follow enqueue, delivery and results, and a queue opened again on
// the same file counts the same.
func TestStateCounts(t *testing.T) {
	q, _ := newQueue(t)
	ctx := context.Background()
	want := map[string]int64{StateQueued: 0, StateDelivered: 0, StateAcknowledged: 0, StatePartial: 0, StateError: 0}
	check := func(step string) {
		t.Helper()
		if got := q.StateCounts(); !maps.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", step, got, want)
		}
	}
	check("empty")
	a, _ := q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeLock})
	q.Enqueue(ctx, Command{DeviceID: "d1", Type: TypeWipe})
	q.Enqueue(ctx, Command{DeviceID: "d2", Type: TypeLock})
	want[StateQueued] = 3
	check("enqueued")
	q.Wait(ctx, "d1", 0)
	q.Wait(ctx, "d1", 0) // redelivery moves nothing
	want[StateQueued], want[StateDelivered] = 1, 2
	check("delivered")
	q.Complete(ctx, "d1", a.ID, Result{Status: ResultDone}, nil)
	q.Complete(ctx, "d1", a.ID, Result{Status: ResultFailed}, nil) // repeated: changes nothing
	q.Complete(ctx, "d1", "c_none", Result{Status: ResultDone}, nil)
	want[StateDelivered], want[StateAcknowledged] = 1, 1
	check("completed")
	again, err := New(q.db)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.StateCounts(); !maps.Equal(got, want) {
		t.Fatalf("reopened: %v, want %v", got, want)
	}
}
