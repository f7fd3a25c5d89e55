package commands

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/service"
	"go.etcd.io/bbolt"
)

// Listener is told about every stored result, after it was committed. Posture ingest uses it to
// re-evaluate the device.
type Listener func(ctx context.Context, res *Result)

// Hook wraps nanomdm's service so that each command result is parsed and committed to the Store
// before nanomdm marks the command done. If storing fails the device gets an error and reports
// the result again later: a result is never acknowledged and then lost.
type Hook struct {
	service.CheckinAndCommandService
	store     *Store
	log       *slog.Logger
	now       func() time.Time
	listeners []Listener
	inTx      func(tx *bbolt.Tx, res *Result) error
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

// WithResultTx runs fn inside the transaction that stores each new result, so that what it writes
// (the result's audit entry) commits if and only if the result does. An error from fn fails the
// store, and the device resends the result later.
func WithResultTx(fn func(tx *bbolt.Tx, res *Result) error) HookOption {
	return func(h *Hook) { h.inTx = fn }
}

// NewHook wraps next.
func NewHook(next service.CheckinAndCommandService, store *Store, opts ...HookOption) *Hook {
	h := &Hook{CheckinAndCommandService: next, store: store, log: slog.Default(), now: time.Now}
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
			if rec, err := h.store.Get(ctx, id, results.CommandUUID); err == nil {
				res.RequestType = rec.RequestType
			}
			if err := parse(results.Raw, res); err != nil {
				// nanomdm already parsed the envelope; a command-specific part of an unexpected
				// shape is kept as status only, so one odd device cannot wedge its own queue.
				h.log.WarnContext(ctx, "command result body not understood", "enrollment_id", id,
					"command_uuid", results.CommandUUID, "err", err)
			}
			saved, err := h.store.saveResult(res, h.inTx)
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
