package commands

import (
	"context"
	"sync"
	"sync/atomic"
)

// DefaultPushConcurrency is how many APNs pushes RunPushes keeps in flight when
// WithPushConcurrency does not say. At Apple's typical 50 ms round trip that is up to 4,000
// pushes a second, on a handful of HTTP/2 connections (each carries many streams).
const DefaultPushConcurrency = 200

// DeliveryWorkers is how many goroutines a delivery to the whole fleet (a policy change) queues
// commands from with Enqueue, so that their durable writes share commits.
const DeliveryWorkers = 8

// WithPushConcurrency sets how many pushes RunPushes keeps in flight at once (values < 1 mean
// DefaultPushConcurrency).
func WithPushConcurrency(n int) DispatcherOption {
	return func(d *Dispatcher) {
		if n >= 1 {
			d.concurrency = n
		}
	}
}

// pushQueue holds the devices waiting for a background push, each once, in the order they
// first asked, with the commands that wait for that push.
type pushQueue struct {
	mu      sync.Mutex
	order   []string            // enrollment IDs, oldest first, from head
	head    int                 // order[:head] are taken
	waiting map[string][]string // enrollment ID -> UUIDs of the commands the push is for
	running atomic.Bool         // RunPushes is taking from the queue
	wake    chan struct{}       // a token when order may hold work
}

// add queues a push for the command uuid of enrollmentID and reports whether it was queued:
// false when no RunPushes is running, and the caller pushes itself. A device already waiting
// gets no second push: one push makes it fetch every command queued for it.
func (q *pushQueue) add(enrollmentID, uuid string) bool {
	if !q.running.Load() {
		return false
	}
	q.mu.Lock()
	cmds, queued := q.waiting[enrollmentID]
	q.waiting[enrollmentID] = append(cmds, uuid)
	if !queued {
		q.order = append(q.order, enrollmentID)
	}
	q.mu.Unlock()
	q.signal()
	return true
}

// take returns the next device to push and its commands; ok is false when none waits.
func (q *pushQueue) take() (enrollmentID string, uuids []string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.order) {
		return "", nil, false
	}
	enrollmentID = q.order[q.head]
	q.order[q.head] = ""
	q.head++
	if q.head == len(q.order) { // drained: reuse the array from the start
		q.order, q.head = q.order[:0], 0
	}
	uuids = q.waiting[enrollmentID]
	delete(q.waiting, enrollmentID)
	return enrollmentID, uuids, true
}

// Len returns how many devices wait for a push.
func (q *pushQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order) - q.head
}

func (q *pushQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Enqueue is Send without waiting for APNs: the command is recorded and queued, and its push
// is left to RunPushes, which pushes each device once for all the commands queued for it
// meanwhile, many devices at a time. Use it for work that reaches many devices (a policy
// change, a posture refresh); a person's lock or wipe uses Send and sees the push's outcome.
// Without a running RunPushes, Enqueue pushes itself, as Send does. The returned record is as
// queued; RunPushes records the push on it later.
func (d *Dispatcher) Enqueue(ctx context.Context, enrollmentID string, cmd Command, requestedBy string) (*Record, error) {
	// Many callers enqueue at once here (a policy change reaching the fleet): their records
	// share commits.
	rec, err := d.enqueue(ctx, enrollmentID, cmd, requestedBy, d.store.PutShared)
	if err != nil {
		return nil, err
	}
	if d.pending.add(enrollmentID, rec.UUID) {
		return rec, nil
	}
	return d.Push(ctx, enrollmentID, rec.UUID)
}

// RunPushes sends the pushes Enqueue leaves until ctx ends, with up to the configured
// concurrency in flight. Pushes still waiting when it returns are not lost: their commands stay
// queued for the device's next check-in (and the posture refresh pushes it again).
func (d *Dispatcher) RunPushes(ctx context.Context) {
	d.pending.running.Store(true)
	defer d.pending.running.Store(false)
	var wg sync.WaitGroup
	for range d.concurrency {
		wg.Go(func() {
			for {
				eid, uuids, ok := d.pending.take()
				if !ok {
					select {
					case <-ctx.Done():
						return
					case <-d.pending.wake:
						continue
					}
				}
				if d.pending.len() > 0 {
					d.pending.signal() // more work: wake another worker
				}
				// A push under way finishes even when ctx ends: it is a few milliseconds.
				err := d.pushOnce(context.WithoutCancel(ctx), eid)
				for _, uuid := range uuids {
					if _, rerr := d.recordPush(context.WithoutCancel(ctx), eid, uuid, err); rerr != nil {
						d.log.WarnContext(ctx, "recording a push", "enrollment_id", eid, "command_uuid", uuid, "err", rerr)
					}
				}
			}
		})
	}
	wg.Wait()
}
