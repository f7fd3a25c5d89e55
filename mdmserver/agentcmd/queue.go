package agentcmd

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Queue holds agent commands and wakes long polls: it runs the package's rules each in a unit of
// work of its own, and tells a device's waiting polls when a command for it committed.
type Queue struct {
	st  Store
	now func() time.Time

	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// New returns a Queue on st.
func New(st Store) *Queue {
	return &Queue{st: st, now: time.Now, waiters: map[string][]chan struct{}{}}
}

// StateCounts returns how many commands are in each state, every state listed (at zero when
// none is); "" counts commands whose state could not be read.
func (q *Queue) StateCounts(ctx context.Context) (map[string]int64, error) {
	var counts map[string]int64
	if err := q.st.View(ctx, func(tx Tx) error {
		var err error
		counts, err = tx.AgentCommands().StateCounts(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(States)+1)
	for _, st := range States {
		out[st] = 0
	}
	for st, n := range counts {
		out[st] = n
	}
	return out, nil
}

// Enqueue commits c for its device (see the package's Enqueue) and wakes the device's long
// polls.
func (q *Queue) Enqueue(ctx context.Context, c Command) (*Command, error) {
	var cmd *Command
	err := q.st.Update(ctx, func(tx Tx) error {
		var err error
		cmd, err = Enqueue(ctx, tx.AgentCommands(), c, q.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	q.wake(cmd.DeviceID)
	return cmd, nil
}

// List returns every command of a device, oldest first.
func (q *Queue) List(ctx context.Context, deviceID string) ([]Command, error) {
	var out []Command
	err := q.st.View(ctx, func(tx Tx) error {
		var err error
		out, err = List(ctx, tx.AgentCommands(), deviceID)
		return err
	})
	return out, err
}

// Get returns one command of a device, or ErrNotFound.
func (q *Queue) Get(ctx context.Context, deviceID, id string) (*Command, error) {
	var cmd *Command
	err := q.st.View(ctx, func(tx Tx) error {
		var err error
		cmd, err = tx.AgentCommands().Command(ctx, deviceID, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cmd, nil
}

// pending returns the device's unfinished commands and marks them delivered.
func (q *Queue) pending(ctx context.Context, deviceID string) ([]Command, error) {
	var out []Command
	err := q.st.Update(ctx, func(tx Tx) error {
		var err error
		out, err = Deliver(ctx, tx.AgentCommands(), deviceID, q.now())
		return err
	})
	return out, err
}

// Wait returns the device's unfinished commands, waiting up to wait for one to arrive when there
// are none. Unfinished commands are returned again on every poll until their result is reported:
// an agent that crashed mid-command gets it again, and runs it idempotently by ID.
func (q *Queue) Wait(ctx context.Context, deviceID string, wait time.Duration) ([]Command, error) {
	ch := make(chan struct{}, 1)
	q.mu.Lock()
	q.waiters[deviceID] = append(q.waiters[deviceID], ch)
	q.mu.Unlock()
	defer q.unwait(deviceID, ch)

	cmds, err := q.pending(ctx, deviceID)
	if err != nil || len(cmds) > 0 || wait <= 0 {
		return cmds, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return q.pending(ctx, deviceID)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, nil
	}
}

func (q *Queue) wake(deviceID string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ch := range q.waiters[deviceID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (q *Queue) unwait(deviceID string, ch chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.waiters[deviceID]
	if i := slices.Index(w, ch); i >= 0 {
		w = slices.Delete(w, i, i+1)
	}
	if len(w) == 0 {
		delete(q.waiters, deviceID)
	} else {
		q.waiters[deviceID] = w
	}
}

// Complete records the agent's result in a unit of work of its own (see the package's
// Complete). A caller that commits more with the result (its audit entry) runs the package's
// Complete in its own unit of work instead.
func (q *Queue) Complete(ctx context.Context, deviceID, id string, r Result) (cmd *Command, first bool, err error) {
	err = q.st.Update(ctx, func(tx Tx) error {
		var err error
		cmd, first, err = Complete(ctx, tx.AgentCommands(), deviceID, id, r, q.now())
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return cmd, first, nil
}
