package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/api"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/posture"
)

// Delivery method URNs (SSF 1.0 section 6).
const (
	MethodPush = "urn:ietf:rfc:8935" // Hale POSTs each SET to the receiver
	MethodPoll = "urn:ietf:rfc:8936" // the receiver polls Hale
)

// Stored delivery methods (the stream records of earlier releases use these words).
const (
	deliveryPush = "push"
	deliveryPoll = "poll"
)

// Stream statuses (SSF 1.0 section 8.1.2).
const (
	StatusEnabled  = "enabled"  // events are delivered
	StatusPaused   = "paused"   // events are held and delivered once enabled again
	StatusDisabled = "disabled" // events are neither delivered nor held
)

// Limits on stream configuration.
const (
	maxAudience        = 256
	maxURL             = 2048
	maxAuthHeader      = 4096
	maxDescription     = 512
	maxReason          = 256
	maxEventsRequested = 32
	maxEventURI        = 512
	// maxStreamsPerOwner bounds what one credential can make the server store and sign for.
	maxStreamsPerOwner = 16
)

// Caller is who calls the stream API: the credential that owns the streams it creates, and
// what it may do with streams it does not own.
type Caller struct {
	// ID identifies the credential (an API token's ID). Streams it creates belong to it, and
	// only it may poll, acknowledge, change or verify them.
	ID string
	// ReadAll lets the caller read every stream (admin, security, auditor).
	ReadAll bool
	// DeleteAll lets the caller delete any stream (admin, security).
	DeleteAll bool
}

// owns reports whether c is the credential that created r. A stream from before owners has
// none: nobody owns it.
func (c Caller) owns(r *StreamRecord) bool { return c.ID != "" && r.Owner == c.ID }

// Delivery is how a stream's SETs reach the receiver: the wire type of package api. Its
// AuthorizationHeader is write-only, sealed at rest and never returned (Stream.AuthorizationSet
// says whether there is one).
type Delivery = api.EventDelivery

// Config is what a receiver chooses for a stream: SSF's Receiver-Supplied properties, and the
// audience, which Hale lets the receiver name when it creates the stream.
type Config struct {
	Delivery        Delivery // a zero Method means poll
	EventsRequested []string // unknown event types are kept but never delivered; none means all
	Description     string
	Audience        string // create only; default: the push endpoint or the poll URL
}

// Stream is a stream's configuration as SSF 1.0 section 8.1.1 describes it, followed by Hale's
// own members (status, subjects, owner and delivery state): the wire type of package api. The
// delivery state is filled on read from the stream record and its outbox, so every server of a
// database shows the same.
type Stream = api.EventStream

// supported are the event types a stream can be delivered. Verification events are not
// requested: they go to the one stream being verified.
var supported = []string{posture.EventComplianceChange, posture.EventSessionRevoked}

// delivered is events_delivered: the supported types the stream requested, or all of them
// when it requested none.
func (r *StreamRecord) delivered() []string {
	if len(r.EventsRequested) == 0 {
		return slices.Clone(supported)
	}
	out := []string{}
	for _, e := range supported {
		if slices.Contains(r.EventsRequested, e) {
			out = append(out, e)
		}
	}
	return out
}

// wants reports whether the stream is delivered events of type typ.
func (r *StreamRecord) wants(typ string) bool { return slices.Contains(r.delivered(), typ) }

func (r *StreamRecord) status() string {
	if r.Status == "" {
		return StatusEnabled
	}
	return r.Status
}

// takesEvents reports whether Emit writes to the stream: not when it is disabled, and not
// when it is a poll stream from before owners, which nobody may poll.
func (r *StreamRecord) takesEvents() bool {
	return r.status() != StatusDisabled && (r.Owner != "" || r.Delivery == deliveryPush)
}

// CreateStream validates c and stores a new stream owned by the caller. The returned stream has
// no AuthorizationHeader. Validation failures wrap ErrInvalid; a caller with no identity, or
// with maxStreamsPerOwner streams already, gets ErrForbidden or ErrTooMany.
func (t *Transmitter) CreateStream(ctx context.Context, caller Caller, c Config) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return Stream{}, err
	}
	if caller.ID == "" {
		return Stream{}, fmt.Errorf("%w: streams belong to the credential that creates them, and this request has none", ErrForbidden)
	}
	rec := StreamRecord{ID: "ss_" + randid.Hex(16), Owner: caller.ID, CreatedAt: t.now().UTC(), Rev: 1}
	if err := t.apply(&rec, c, false); err != nil {
		return Stream{}, err
	}
	err := t.st.Update(ctx, func(tx Tx) error {
		r := tx.Events()
		recs, err := r.Streams(ctx)
		if err != nil {
			return err
		}
		n := 0
		for i := range recs {
			if recs[i].Owner == caller.ID {
				n++
			}
		}
		if n >= maxStreamsPerOwner {
			return fmt.Errorf("%w: this credential already has %d streams; delete one first", ErrTooMany, n)
		}
		return r.PutStream(ctx, &rec)
	})
	if err != nil {
		return Stream{}, err
	}
	t.streamsChanged()
	return t.view(&rec), nil
}

// ListStreams returns the caller's streams, or every stream for a caller who may read all,
// ordered by ID.
func (t *Transmitter) ListStreams(ctx context.Context, caller Caller) ([]Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := t.records(ctx)
	if err != nil {
		return nil, err
	}
	out := []Stream{}
	for i := range recs {
		if caller.ReadAll || caller.owns(&recs[i]) {
			out = append(out, t.view(&recs[i]))
		}
	}
	return out, nil
}

// GetStream returns one stream the caller owns or may read, or an error wrapping ErrNotFound:
// a stream of another receiver is not there, as far as the caller can tell.
func (t *Transmitter) GetStream(ctx context.Context, caller Caller, id string) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return Stream{}, err
	}
	rec, err := t.record(ctx, id)
	if err != nil {
		return Stream{}, err
	}
	if !caller.ReadAll && !caller.owns(rec) {
		return Stream{}, notFound(id)
	}
	return t.view(rec), nil
}

// Patch changes a stream's receiver configuration. Nil members stay as they are (SSF PATCH)
// or, when the configuration is replaced (SSF PUT), are removed.
type Patch struct {
	Delivery        *Delivery
	EventsRequested *[]string
	Description     *string
	Audience        string // only to repeat it: aud cannot change
}

// UpdateStream changes the configuration of a stream the caller owns: merging p into it, or
// with replace, putting p in its place. check, when set, sees the stream as it was first (the
// API compares what the receiver sent back of Hale's members). A patched push stream keeps its
// Authorization header unless the patch names another header or endpoint; a replaced one keeps
// it only if the replacement repeats it.
func (t *Transmitter) UpdateStream(ctx context.Context, caller Caller, id string, p Patch, replace bool, check func(cur *Stream) error) (Stream, error) {
	var out StreamRecord
	err := t.change(ctx, caller, id, func(_ Repository, rec *StreamRecord) error {
		if check != nil {
			cur := t.config(rec)
			if err := check(&cur); err != nil {
				return err
			}
		}
		c := Config{Audience: p.Audience}
		if !replace {
			c.Delivery = Delivery{Method: rec.Delivery, EndpointURL: rec.EndpointURL}
			c.EventsRequested, c.Description = rec.EventsRequested, rec.Description
		}
		if p.Delivery != nil {
			c.Delivery = *p.Delivery
		}
		if p.EventsRequested != nil {
			c.EventsRequested = *p.EventsRequested
		}
		if p.Description != nil {
			c.Description = *p.Description
		}
		if err := t.apply(rec, c, !replace); err != nil {
			return err
		}
		out = *rec
		return nil
	})
	if err != nil {
		return Stream{}, err
	}
	return t.view(&out), nil
}

// change runs fn on the caller's own stream id inside a write transaction and stores the
// result with its revision moved on. Anyone else's stream is ErrNotFound.
func (t *Transmitter) change(ctx context.Context, caller Caller, id string, fn func(r Repository, rec *StreamRecord) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := t.st.Update(ctx, func(tx Tx) error {
		r := tx.Events()
		rec, err := stream(ctx, r, id)
		if err != nil {
			return err
		}
		if !caller.owns(rec) {
			return notFound(id)
		}
		if err := fn(r, rec); err != nil {
			return err
		}
		rec.Rev++
		return r.PutStream(ctx, rec)
	})
	if err != nil {
		return err
	}
	t.streamsChanged()
	t.notify(id) // a poll waiting on a stream that was paused or changed answers now
	return nil
}

// DeleteStream removes a stream the caller owns (or any, for a caller who may delete all),
// with every SET still waiting for it and its subjects, in one transaction, and stops its
// deliverer.
func (t *Transmitter) DeleteStream(ctx context.Context, caller Caller, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := t.st.Update(ctx, func(tx Tx) error {
		r := tx.Events()
		rec, err := stream(ctx, r, id)
		if err != nil {
			return err
		}
		if !caller.DeleteAll && !caller.owns(rec) {
			return notFound(id)
		}
		if err := r.DeleteStream(ctx, id); err != nil {
			return err
		}
		if err := r.ClearOutbox(ctx, id); err != nil {
			return err
		}
		return r.ClearSubjects(ctx, id)
	})
	if err != nil {
		return err
	}
	t.notify(id)
	t.streamsChanged()
	return nil
}

// stream reads one stream through r; a missing one is notFound(id).
func stream(ctx context.Context, r Repository, id string) (*StreamRecord, error) {
	rec, err := r.Stream(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(id)
	}
	return rec, err
}

func notFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, truncate(id, 64)) }

// records reads every stored stream, ordered by ID.
func (t *Transmitter) records(ctx context.Context) ([]StreamRecord, error) {
	var out []StreamRecord
	err := t.st.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Events().Streams(ctx)
		return err
	})
	return out, err
}

// record reads one stored stream.
func (t *Transmitter) record(ctx context.Context, id string) (*StreamRecord, error) {
	var r *StreamRecord
	err := t.st.View(ctx, func(tx Tx) error {
		var err error
		r, err = stream(ctx, tx.Events(), id)
		return err
	})
	return r, err
}

// view is the public form of a record, with its delivery state.
func (t *Transmitter) view(r *StreamRecord) Stream {
	s := t.config(r)
	s.Pending = t.Pending(r.ID)
	s.LastDeliveredAt, s.LastError, s.LastErrorAt = r.LastDeliveredAt, r.LastError, r.LastErrorAt
	return s
}

// config is the public form of a record without its delivery state: safe inside a transaction.
func (t *Transmitter) config(r *StreamRecord) Stream {
	s := Stream{
		StreamID:                r.ID,
		Issuer:                  t.issuer,
		Audience:                r.Audience,
		Delivery:                Delivery{Method: MethodPoll, EndpointURL: t.pollURL(r.ID)},
		EventsSupported:         slices.Clone(supported),
		EventsRequested:         slices.Clone(r.EventsRequested),
		EventsDelivered:         r.delivered(),
		Description:             r.Description,
		MinVerificationInterval: int(t.minVerify / time.Second),
		Status:                  r.status(),
		StatusReason:            r.StatusReason,
		Subjects:                "all",
		Owner:                   r.Owner,
		AuthorizationSet:        len(r.AuthSealed) > 0,
		CreatedAt:               r.CreatedAt,
	}
	if s.EventsRequested == nil {
		s.EventsRequested = []string{}
	}
	if r.Delivery == deliveryPush {
		s.Delivery = Delivery{Method: MethodPush, EndpointURL: r.EndpointURL}
	}
	if r.Listed {
		s.Subjects = "listed"
	}
	return s
}

// failed records a delivery failure on the stream, as the receiver may see it. A failure to
// record it is logged: it may be the store failing, which is what is being recorded.
func (t *Transmitter) failed(ctx context.Context, id, msg string) {
	now := t.now().UTC()
	err := t.st.Update(ctx, func(tx Tx) error {
		return noteOn(ctx, tx.Events(), id, func(rec *StreamRecord) { rec.LastError, rec.LastErrorAt = msg, now })
	})
	if err != nil && ctx.Err() == nil {
		t.log.Warn("events: cannot record a delivery failure on the stream", "stream", id, "err", err)
	}
}

// streamsChanged tells Run to start, restart or stop deliverers.
func (t *Transmitter) streamsChanged() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}
