package commands

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// ResultTx is the unit of work a device's result is stored in, as WithResultTx's function sees
// it: the commands repository, and what the result's audit entry needs (the inventory, to name
// the device the result came from, and the audit log).
type ResultTx interface {
	Tx
	Inventory() inventory.Repository
	Audit() audit.Repository
}

// ResultStore runs the Hook's units of work (storage.Scope(st, func(tx storage.Tx)
// commands.ResultTx { return tx }) is one).
type ResultStore interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(ResultTx) error) error
	// Batch runs fn in a read-write transaction it may share with other devices' results; fn
	// may run more than once.
	Batch(ctx context.Context, fn func(ResultTx) error) error
}

// Listener is told about every stored result, after it was committed. Posture ingest uses it to
// re-evaluate the device.
type Listener func(ctx context.Context, res *Result)

// Hook wraps nanomdm's service so that each command result is parsed and committed to the store
// before nanomdm marks the command done. If storing fails the device gets an error and reports
// the result again later: a result is never acknowledged and then lost.
type Hook struct {
	service.CheckinAndCommandService
	st        ResultStore
	log       *slog.Logger
	now       func() time.Time
	listeners []Listener
	inTx      func(ctx context.Context, tx ResultTx, res *Result) error
}

// HookOption configures a Hook.
type HookOption func(*Hook)

// WithLogger sets the hook's logger.
func WithLogger(l *slog.Logger) HookOption { return func(h *Hook) { h.log = l } }

// WithClock sets the clock that stamps each result's ReceivedAt (default time.Now).
func WithClock(now func() time.Time) HookOption { return func(h *Hook) { h.now = now } }

// WithListener adds a listener told about each stored result.
func WithListener(l Listener) HookOption {
	return func(h *Hook) { h.listeners = append(h.listeners, l) }
}

// WithResultTx runs fn inside the unit of work that stores each new result, so that what it
// writes through tx (the result's audit entry) commits if and only if the result does. An error
// from fn fails the store, and the device resends the result later. The unit of work is a
// Batch shared with other devices' results, so fn may run more than once and must be
// idempotent.
func WithResultTx(fn func(ctx context.Context, tx ResultTx, res *Result) error) HookOption {
	return func(h *Hook) { h.inTx = fn }
}

// NewHook wraps next; results are stored in st.
func NewHook(next service.CheckinAndCommandService, st ResultStore, opts ...HookOption) *Hook {
	h := &Hook{CheckinAndCommandService: next, st: st, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(h)
	}
	return h
}

// CommandAndReportResults records the result, then passes the request to the wrapped service.
func (h *Hook) CommandAndReportResults(r *mdm.Request, results *mdm.CommandResults) (*mdm.Command, error) {
	if results.Status != "Idle" && results.CommandUUID != "" {
		if id := EnrollmentID(&results.Enrollment); id != "" {
			res := &Result{
				EnrollmentID: id,
				CommandUUID:  results.CommandUUID,
				Status:       results.Status,
				ErrorChain:   slices.Clone(results.ErrorChain),
				ReceivedAt:   h.now().UTC(),
			}
			ctx := r.Context()
			res.RequestType = h.requestType(ctx, id, results.CommandUUID)
			if err := parse(results.Raw, res); err != nil {
				// nanomdm already parsed the envelope; a command-specific part of an unexpected
				// shape is kept as status only, so one odd device cannot wedge its own queue.
				h.log.WarnContext(ctx, "command result body not understood", "enrollment_id", id,
					"command_uuid", results.CommandUUID, "err", err)
			}
			saved, err := h.save(ctx, res)
			if err != nil {
				h.log.ErrorContext(ctx, "storing command result failed; the device will resend it",
					"enrollment_id", id, "command_uuid", results.CommandUUID, "err", err)
				return nil, err
			}
			if saved {
				for _, l := range h.listeners {
					l(ctx, res)
				}
			}
		}
	}
	return h.CheckinAndCommandService.CommandAndReportResults(r, results)
}

// requestType is the RequestType of the command a result answers, when Hale sent it; "" for a
// command enqueued outside Hale (the result's body may tell, see parse).
func (h *Hook) requestType(ctx context.Context, enrollmentID, uuid string) string {
	var rt string
	_ = h.st.View(ctx, func(tx ResultTx) error {
		if rec, err := tx.Commands().Record(ctx, enrollmentID, uuid); err == nil {
			rt = rec.RequestType
		}
		return nil
	})
	return rt
}

// save stores res with its record's state change (SaveResult) and runs the WithResultTx
// function, when res was recorded, in the same unit of work: what it writes (the result's audit
// entry) commits if and only if the result does. Results of many devices share one transaction
// (Batch), which is why SaveResult and that function must be idempotent.
func (h *Hook) save(ctx context.Context, res *Result) (saved bool, err error) {
	err = h.st.Batch(ctx, func(tx ResultTx) error {
		var err error
		if saved, err = SaveResult(ctx, tx.Commands(), res); err != nil || !saved {
			return err
		}
		if h.inTx != nil {
			return h.inTx(ctx, tx, res)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return saved, nil
}

// EnrollmentID returns nanomdm's enrollment ID for e: the device channel ID (UDID or enrollment
// ID), with ":<user channel ID>" appended for a user channel. It matches nanomdm's normalizer.
func EnrollmentID(e *mdm.Enrollment) string {
	r := e.Resolved()
	if r == nil {
		return ""
	}
	if r.IsUserChannel {
		return r.DeviceChannelID + ":" + r.UserChannelID
	}
	return r.DeviceChannelID
}
