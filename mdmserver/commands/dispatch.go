package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/push"
	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/micromdm/nanomdm/storage"
	"github.com/micromdm/plist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/pushcert"
)

// Command is an MDM command to send: its RequestType and the command-specific keys.
type Command struct {
	// UUID is the command's UUID; Send makes one when it is empty. Set it when something must
	// be stored under the UUID before the command can reach the device (a lock PIN).
	UUID        string
	RequestType string
	Fields      map[string]any
}

// Dispatcher sends commands: it records them, enqueues them in nanomdm's queue, and pushes the
// device so it checks in.
type Dispatcher struct {
	store   *Service
	queue   storage.CommandEnqueuer
	pusher  push.Pusher
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration
	pushes  *prometheus.CounterVec // by result; nil without WithPushMetrics
	// pending are the pushes Enqueue left for RunPushes; concurrency is how many it sends at once.
	pending     pushQueue
	concurrency int
}

// DispatcherOption configures a Dispatcher.
type DispatcherOption func(*Dispatcher)

// WithDispatchLogger sets the dispatcher's logger.
func WithDispatchLogger(l *slog.Logger) DispatcherOption { return func(d *Dispatcher) { d.log = l } }

// WithPushTimeout bounds how long Send waits for APNs (default 10s). The command stays queued
// when the push fails: the device gets it at its next check-in.
func WithPushTimeout(t time.Duration) DispatcherOption { return func(d *Dispatcher) { d.timeout = t } }

// Push results, the "result" label of hale_apns_pushes_total.
const (
	pushSent     = "sent"          // APNs accepted the push
	pushNoCert   = "no_push_cert"  // no APNs push certificate for the device's topic
	pushNoToken  = "no_push_token" // the device has sent no push token (TokenUpdate) yet
	pushRejected = "rejected"      // APNs answered with an error status
	pushFailed   = "failed"        // no answer: connection, TLS, timeout
)

// WithPushMetrics counts every push by result in hale_apns_pushes_total, registered with reg.
func WithPushMetrics(reg prometheus.Registerer) DispatcherOption {
	return func(d *Dispatcher) {
		d.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hale_apns_pushes_total",
			Help: "APNs pushes sent for MDM commands, by result: sent, no_push_cert, no_push_token, rejected (APNs refused it), failed (no answer).",
		}, []string{"result"})
		for _, r := range []string{pushSent, pushNoCert, pushNoToken, pushRejected, pushFailed} {
			d.pushes.WithLabelValues(r) // every result shows, at zero until it happens
		}
		reg.MustRegister(d.pushes, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hale_apns_push_queue_devices",
			Help: "Devices waiting for a background APNs push (a policy change or posture refresh queued commands for them).",
		}, func() float64 { return float64(d.pending.len()) }))
	}
}

// Push outcomes found before or after APNs.
var (
	// errNoPusher is a push attempted without a pusher: no push certificate was configured.
	errNoPusher = errors.New("no APNs push certificate uploaded; the device gets the command at its next check-in")
	// errNoPushInfo is a push that came back with no response for the enrollment.
	errNoPushInfo = errors.New("no push information for this enrollment (no TokenUpdate yet?)")
)

// pushResult classifies the outcome of one push.
func pushResult(err error) string {
	switch {
	case err == nil:
		return pushSent
	case errors.Is(err, errNoPusher) || errors.Is(err, pushcert.ErrNotFound):
		return pushNoCert
	case errors.Is(err, errNoPushInfo) || errors.Is(err, pushsvc.ErrIdNotFound):
		return pushNoToken
	}
	var apnsErr *nanopush.JSONPushError
	if errors.As(err, &apnsErr) {
		return pushRejected
	}
	return pushFailed
}

// NewDispatcher returns a Dispatcher. pusher may be nil (no push certificate yet): commands then
// wait for the device's next check-in.
func NewDispatcher(store *Service, queue storage.CommandEnqueuer, pusher push.Pusher, opts ...DispatcherOption) *Dispatcher {
	d := &Dispatcher{store: store, queue: queue, pusher: pusher, log: slog.Default(), now: time.Now, timeout: 10 * time.Second,
		concurrency: DefaultPushConcurrency}
	d.pending.waiting, d.pending.wake = map[string][]string{}, make(chan struct{}, 1)
	for _, o := range opts {
		o(d)
	}
	return d
}

var requestTypePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{1,63}$`)

// ErrInvalidCommand is returned for a command that cannot be sent as given.
var ErrInvalidCommand = errors.New("commands: invalid command")

// Send records cmd for enrollmentID, enqueues it and pushes. The record is committed before the
// command is enqueued, so every command a device may run has a record. The returned record's
// state is pushed when APNs accepted the push, otherwise queued with PushError set.
func (d *Dispatcher) Send(ctx context.Context, enrollmentID string, cmd Command, requestedBy string) (*Record, error) {
	rec, err := d.enqueue(ctx, enrollmentID, cmd, requestedBy, d.store.Put)
	if err != nil {
		return nil, err
	}
	return d.Push(ctx, enrollmentID, rec.UUID)
}

// enqueue records cmd for enrollmentID with put and puts it in the device's queue.
func (d *Dispatcher) enqueue(ctx context.Context, enrollmentID string, cmd Command, requestedBy string,
	put func(context.Context, *Record) error) (*Record, error) {
	if !requestTypePattern.MatchString(cmd.RequestType) {
		return nil, fmt.Errorf("%w: request type %q", ErrInvalidCommand, cmd.RequestType)
	}
	if _, reserved := cmd.Fields["RequestType"]; reserved {
		return nil, fmt.Errorf("%w: RequestType is not a field", ErrInvalidCommand)
	}
	uuid := cmd.UUID
	if uuid == "" {
		uuid = NewUUID()
	}
	raw, err := encode(uuid, cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	now := d.now().UTC()
	rec := &Record{UUID: uuid, EnrollmentID: enrollmentID, RequestType: cmd.RequestType, State: StateQueued,
		RequestedBy: requestedBy, CreatedAt: now, UpdatedAt: now}
	if err := put(ctx, rec); err != nil {
		return nil, fmt.Errorf("commands: record: %w", err)
	}
	c := &mdm.Command{CommandUUID: uuid, Raw: raw}
	c.Command.RequestType = cmd.RequestType
	idErrs, err := d.queue.EnqueueCommand(ctx, []string{enrollmentID}, c)
	if err == nil {
		err = idErrs[enrollmentID]
	}
	if err != nil {
		_, _ = d.store.Update(ctx, enrollmentID, uuid, func(r *Record) {
			r.State, r.PushError, r.UpdatedAt = StateError, "enqueue failed: "+err.Error(), d.now().UTC()
		})
		return nil, fmt.Errorf("commands: enqueue for %s: %w", enrollmentID, err)
	}
	return rec, nil
}

// Push sends an APNs push for a queued command's enrollment and records the outcome.
func (d *Dispatcher) Push(ctx context.Context, enrollmentID, uuid string) (*Record, error) {
	return d.recordPush(ctx, enrollmentID, uuid, d.pushOnce(ctx, enrollmentID))
}

// pushOnce pushes enrollmentID's device and counts the outcome.
func (d *Dispatcher) pushOnce(ctx context.Context, enrollmentID string) error {
	pushErr := errNoPusher
	if d.pusher != nil {
		pctx, cancel := context.WithTimeout(ctx, d.timeout)
		resp, err := d.pusher.Push(pctx, []string{enrollmentID})
		cancel()
		pushErr = err
		if err == nil {
			if r := resp[enrollmentID]; r == nil {
				pushErr = errNoPushInfo
			} else {
				pushErr = r.Err
			}
		}
	}
	if d.pushes != nil {
		d.pushes.WithLabelValues(pushResult(pushErr)).Inc()
	}
	return pushErr
}

// recordPush records a push's outcome on the command it was for. Many pushes finish at once
// under RunPushes, so their records share commits.
func (d *Dispatcher) recordPush(ctx context.Context, enrollmentID, uuid string, pushErr error) (*Record, error) {
	return d.store.UpdateShared(ctx, enrollmentID, uuid, func(r *Record) {
		now := d.now().UTC()
		r.UpdatedAt = now
		if pushErr != nil {
			r.PushError = pushErr.Error()
			d.log.WarnContext(ctx, "push failed; command stays queued", "enrollment_id", enrollmentID, "command_uuid", uuid, "err", pushErr)
			return
		}
		r.PushError = ""
		r.PushedAt = now
		if r.State == StateQueued {
			r.State = StatePushed
		}
	})
}

// QueueRemover takes one command out of an enrollment's queue (the bbolt queue in
// mdmserver/storage/boltstore does).
type QueueRemover interface {
	RemoveCommand(ctx context.Context, enrollmentID, uuid string) error
}

// Expire takes commands that no device answered within ttl out of their queues and marks them
// expired, except those keep names (a wipe waits for its device however long that takes). It
// returns how many expired. A command is removed from the queue before it is marked, so a
// crash in between leaves it unanswered, to be expired again by the next call.
func (d *Dispatcher) Expire(ctx context.Context, ttl time.Duration, keep func(requestType string) bool) (int, error) {
	remover, ok := d.queue.(QueueRemover)
	if !ok {
		return 0, errors.New("commands: the queue cannot remove single commands")
	}
	recs, err := d.store.Unanswered(ctx, d.now().Add(-ttl))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, rec := range recs {
		if keep != nil && keep(rec.RequestType) {
			continue
		}
		if err := remover.RemoveCommand(ctx, rec.EnrollmentID, rec.UUID); err != nil {
			return n, fmt.Errorf("commands: removing %s from the queue: %w", rec.UUID, err)
		}
		_, err := d.store.Update(ctx, rec.EnrollmentID, rec.UUID, func(r *Record) {
			if !r.State.Final() { // the device may have answered meanwhile
				r.State, r.UpdatedAt = StateExpired, d.now().UTC()
			}
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// encode renders the command plist nanomdm queues and the device receives.
func encode(uuid string, cmd Command) ([]byte, error) {
	body := make(map[string]any, len(cmd.Fields)+1)
	for k, v := range cmd.Fields {
		body[k] = v
	}
	body["RequestType"] = cmd.RequestType
	return plist.MarshalIndent(map[string]any{"CommandUUID": uuid, "Command": body}, "\t")
}

// NewUUID returns a random (version 4) UUID in upper case, as Apple's tools write them.
func NewUUID() string {
	return randid.UUID()
}
