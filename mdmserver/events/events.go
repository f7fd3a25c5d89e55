// Package events is Hale's OpenID Shared Signals (SSF 1.0) transmitter: it turns what happens
// to a device (its access decision flips; it is locked, lost, wiped or revoked) into CAEP
// Security Event Tokens and gets them to the configured receivers, by push (RFC 8935) or by
// poll (RFC 8936).
//
// Every SET is committed to the store's outbox before Emit returns, so an acknowledged event
// survives a crash, and stays there until the receiver has taken it: a push receiver answered
// 2xx (or rejected it as invalid), a poll receiver acknowledged its jti.
//
// Receivers manage their streams with the SSF 1.0 stream API (api.go). A stream belongs to the
// credential that created it: no other receiver can see, poll or change it. Push delivery
// connects only to public addresses, or to those the operator allows (dest.go), so a stream
// cannot aim Hale, and the receiver's Authorization header, at the network inside.
package events

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/posture"
)

// Signer signs a JWT with the server's keys (mdmserver/signing.Keyset implements it).
type Signer interface {
	Sign(typ string, claims any) (string, error)
}

// Event is one thing that happened to a device.
type Event struct {
	Type         string // posture.EventComplianceChange or posture.EventSessionRevoked
	DeviceID     string
	ReasonCode   string // Hale's stable reason code (posture.Reason*)
	ReasonDetail string // for administrators, in English
	// PreviousStatus and CurrentStatus are "compliant" or "not-compliant"; a compliance change
	// requires both.
	PreviousStatus, CurrentStatus string
	Initiator                     string // "admin", "user", "policy" or "system"
	TXN                           string // the command or change ID
	At                            time.Time
	// AppInstance, when set, makes the SET's subject that messaging app instance on the device
	// (a complex subject with device and application members) rather than the device alone.
	AppInstance string
	// GraceUntil and BreakGlass are Hale's extension members of notices (grace warnings,
	// break-glass start and end): posture.CAEPEvent's grace_until and break_glass.
	GraceUntil time.Time
	BreakGlass *posture.BreakGlass
}

// Errors. Each is wrapped with what was wrong.
var (
	ErrNotFound  = errors.New("events: no such event stream")
	ErrInvalid   = errors.New("events: invalid")
	ErrForbidden = errors.New("events: not allowed")
	ErrTooMany   = errors.New("events: too many")
	// ErrDisabled: a disabled stream holds no events, so it cannot be verified.
	ErrDisabled = errors.New("events: the stream is disabled")
	// ErrTooSoon: verification asked for again within the minimum interval.
	ErrTooSoon = errors.New("events: verification requested too soon")
)

// sealPurpose binds sealed Authorization headers to this slot of the store.
const sealPurpose = "hale/ssf-auth"

// Defaults.
const (
	defaultHTTPTimeout = 10 * time.Second
	defaultMinBackoff  = time.Second
	defaultMaxBackoff  = 5 * time.Minute
	defaultPollWait    = 30 * time.Second
	defaultMinVerify   = 5 * time.Second
)

// entry is one signed SET on its way to the outbox.
type entry struct {
	JTI string
	SET string
}

// Transmitter emits SETs into the outbox and delivers them. It is safe for concurrent use.
type Transmitter struct {
	st     Store
	signer Signer
	issuer string
	key    *seal.Key

	log        *slog.Logger
	now        func() time.Time
	guard      *guard
	rootCAs    *x509.CertPool
	client     *http.Client
	minBackoff time.Duration
	maxBackoff time.Duration
	pollWait   time.Duration
	minVerify  time.Duration
	caller     func(*http.Request) Caller
	metrics    *metrics

	mu      sync.Mutex
	signals map[string]chan struct{} // stream ID → closed on the next change to its outbox
	running bool
	changed chan struct{} // a stream was created, changed or deleted; Run reconciles deliverers
	// reconciles counts Run's reconciliations (tests wait for the first).
	reconciles atomic.Int64
}

// New returns a Transmitter keeping its streams and outbox in st. issuer is the "iss" of every
// SET and the base of the URLs in the SSF configuration; key seals receivers' Authorization
// headers at rest.
func New(st Store, signer Signer, issuer string, key *seal.Key, opts ...Option) (*Transmitter, error) {
	switch {
	case st == nil:
		return nil, errors.New("events: nil store")
	case signer == nil:
		return nil, errors.New("events: nil signer")
	case key == nil:
		return nil, errors.New("events: nil seal key")
	}
	issuer = strings.TrimRight(issuer, "/")
	if issuer == "" {
		return nil, errors.New("events: empty issuer; set it to the server's public base URL")
	}
	t := &Transmitter{
		st:         st,
		signer:     signer,
		issuer:     issuer,
		key:        key,
		log:        slog.Default(),
		now:        time.Now,
		guard:      newGuard(),
		minBackoff: defaultMinBackoff,
		maxBackoff: defaultMaxBackoff,
		pollWait:   defaultPollWait,
		minVerify:  defaultMinVerify,
		caller:     func(*http.Request) Caller { return Caller{} },
		signals:    map[string]chan struct{}{},
		changed:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(t)
	}
	t.client = t.newClient()
	return t, nil
}

// newClient is push delivery's HTTP client. It connects through the guard, never through a
// proxy (the guard must see the receiver's address), and does not follow redirects: a
// receiver's endpoint is configured exactly, and a redirect must not carry SETs (or the
// receiver's Authorization header) somewhere else.
func (t *Transmitter) newClient() *http.Client {
	return &http.Client{
		Timeout: defaultHTTPTimeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         t.guard.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: t.rootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: defaultHTTPTimeout,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        100,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// initiators are the initiating_entity values CAEP defines.
var initiators = map[string]bool{"": true, "admin": true, "user": true, "policy": true, "system": true}

func validStatus(s string) bool { return s == "compliant" || s == "not-compliant" }

// validateEvent checks an event before anything is signed, so one bad event fails the whole
// Emit instead of committing half of it.
func validateEvent(ev Event) error {
	switch ev.Type {
	case posture.EventComplianceChange:
		if !validStatus(ev.PreviousStatus) || !validStatus(ev.CurrentStatus) {
			return fmt.Errorf("%w event: a compliance change needs previous and current status of compliant or not-compliant, got %q and %q",
				ErrInvalid, ev.PreviousStatus, ev.CurrentStatus)
		}
	case posture.EventSessionRevoked:
	default:
		return fmt.Errorf("%w event: type %q is not one Hale emits", ErrInvalid, ev.Type)
	}
	if ev.DeviceID == "" {
		return fmt.Errorf("%w event: empty device ID", ErrInvalid)
	}
	if len(ev.AppInstance) > 256 {
		return fmt.Errorf("%w event: app instance ID of %d bytes", ErrInvalid, len(ev.AppInstance))
	}
	if !initiators[ev.Initiator] {
		return fmt.Errorf("%w event: initiator %q is not admin, user, policy or system", ErrInvalid, ev.Initiator)
	}
	return nil
}

// body is the CAEP event body of ev.
func (t *Transmitter) body(ev Event) (json.RawMessage, error) {
	at := ev.At
	if at.IsZero() {
		at = t.now()
	}
	b := posture.CAEPEvent{
		EventTimestamp:   at.Unix(),
		InitiatingEntity: ev.Initiator,
		ReasonCode:       ev.ReasonCode,
	}
	if ev.ReasonDetail != "" {
		b.ReasonAdmin = map[string]string{"en": ev.ReasonDetail}
	}
	if ev.Type == posture.EventComplianceChange {
		b.PreviousStatus, b.CurrentStatus = ev.PreviousStatus, ev.CurrentStatus
	}
	if !ev.GraceUntil.IsZero() {
		b.GraceUntil = ev.GraceUntil.Unix()
	}
	b.BreakGlass = ev.BreakGlass
	return json.Marshal(b)
}

// sign builds and signs one SET for aud about subject.
func (t *Transmitter) sign(aud string, sub posture.SubjectID, eventType string, body json.RawMessage, txn string) (entry, error) {
	jti := randid.Hex(16)
	c := posture.SETClaims{
		Issuer:   t.issuer,
		Audience: aud,
		IssuedAt: t.now().Unix(),
		ID:       jti,
		SubID:    sub,
		Events:   map[string]json.RawMessage{eventType: body},
		TXN:      txn,
	}
	set, err := t.signer.Sign(posture.SETType, c)
	if err != nil {
		return entry{}, fmt.Errorf("events: sign SET: %w", err)
	}
	return entry{JTI: jti, SET: set}, nil
}

// Emit turns evs into SETs for every stream that requested their type and commits them all in
// one transaction before returning: when Emit returns nil, every SET is durable. It then wakes
// the push deliverers and poll waiters of the streams it wrote to. With no streams it does
// nothing.
//
// To commit the SETs together with other writes (an audit entry of the emission), use
// Prepare, Emission.Commit inside the caller's unit of work, and Emission.Sent after it.
func (t *Transmitter) Emit(ctx context.Context, evs ...Event) error {
	em, err := t.Prepare(ctx, evs...)
	if err != nil || em.empty() {
		return err
	}
	err = t.st.Update(ctx, func(tx Tx) error {
		_, err := em.Commit(ctx, tx.Events())
		return err
	})
	if err != nil {
		return fmt.Errorf("events: commit SETs to the outbox: %w", err)
	}
	em.Sent()
	return nil
}

// Emission is a set of SETs signed for the streams that want them, ready to be committed to
// the outbox in a unit of work.
type Emission struct {
	t       *Transmitter
	pending map[string][]entry // stream ID → its SETs, in emission order

	mu    sync.Mutex
	wrote []string // the streams the last Commit wrote to
}

// Prepare turns evs into SETs for every stream that requested their type (its status, its
// event types and its subjects decide), signed, without writing anything: signing stays out
// of the write transaction. Commit the result with Emission.Commit.
func (t *Transmitter) Prepare(ctx context.Context, evs ...Event) (*Emission, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if err := validateEvent(ev); err != nil {
			return nil, err
		}
	}
	em := &Emission{t: t, pending: map[string][]entry{}}
	if len(evs) == 0 {
		return em, nil
	}
	var streams []StreamRecord
	var gets map[string][]bool // stream ID → per event, whether it goes there
	err := t.st.View(ctx, func(tx Tx) error {
		r := tx.Events()
		recs, err := r.Streams(ctx)
		if err != nil {
			return err
		}
		gets = map[string][]bool{}
		for i := range recs {
			rec := &recs[i]
			if !rec.takesEvents() {
				continue
			}
			streams = append(streams, *rec)
			g := make([]bool, len(evs))
			for j, ev := range evs {
				if !rec.wants(ev.Type) {
					continue
				}
				if g[j], err = includes(ctx, r, rec, ev.DeviceID); err != nil {
					return err
				}
			}
			gets[rec.ID] = g
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range streams {
		for j, ev := range evs {
			if !gets[s.ID][j] {
				continue
			}
			body, err := t.body(ev)
			if err != nil {
				return nil, fmt.Errorf("events: encode event: %w", err)
			}
			e, err := t.sign(s.Audience, subjectOf(ev), ev.Type, body, ev.TXN)
			if err != nil {
				return nil, err
			}
			em.pending[s.ID] = append(em.pending[s.ID], e)
		}
	}
	return em, nil
}

// subjectOf is the SSF subject of ev: its device, or its app instance on the device.
func subjectOf(ev Event) posture.SubjectID {
	dev := posture.SubjectID{Format: "opaque", ID: ev.DeviceID}
	if ev.AppInstance == "" {
		return dev
	}
	return posture.SubjectID{Format: "complex", Device: &dev, Application: &posture.SubjectID{Format: "opaque", ID: ev.AppInstance}}
}

// empty reports whether no stream gets any of the emission's SETs.
func (em *Emission) empty() bool { return len(em.pending) == 0 }

// Commit writes the emission's SETs to the outbox through r, inside the caller's unit of work,
// skipping streams deleted or disabled since Prepare read them. It returns how many streams the
// SETs go to: zero means no backend will hear of them. It writes the same whenever it runs, so
// a unit of work that is retried may run it again.
func (em *Emission) Commit(ctx context.Context, r Repository) (streams int, err error) {
	live := make([]string, 0, len(em.pending))
	for id := range em.pending {
		rec, err := stream(ctx, r, id)
		if errors.Is(err, ErrNotFound) || err == nil && rec.status() == StatusDisabled {
			continue // deleted or disabled since it was read
		} else if err != nil {
			return 0, err
		}
		live = append(live, id)
	}
	for _, id := range live {
		for _, e := range em.pending[id] {
			if err := r.Enqueue(ctx, id, e.JTI, e.SET); err != nil {
				return 0, err
			}
		}
	}
	em.mu.Lock()
	em.wrote = live
	em.mu.Unlock()
	return len(live), nil
}

// Sent wakes the push deliverers and poll waiters of the streams Commit wrote to. Call it once
// the unit of work that ran Commit has committed.
func (em *Emission) Sent() {
	em.mu.Lock()
	wrote := em.wrote
	em.mu.Unlock()
	for _, id := range wrote {
		em.t.notify(id)
	}
}

// maxState bounds a verification request's state.
const maxState = 1024

// Verify puts an SSF verification event, echoing state, into the outbox of a stream the caller
// owns, so its receiver can check end to end that it gets, and can verify, what Hale sends. The
// subject is the stream itself. A paused stream holds it until enabled; a disabled stream
// refuses (ErrDisabled), and so does a second request within the minimum interval (ErrTooSoon).
func (t *Transmitter) Verify(ctx context.Context, caller Caller, streamID, state string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(state) > maxState {
		return fmt.Errorf("%w verification: state is longer than %d bytes", ErrInvalid, maxState)
	}
	s, err := t.record(ctx, streamID)
	if err != nil {
		return err
	}
	if !caller.owns(s) {
		return notFound(streamID)
	}
	if s.status() == StatusDisabled {
		return fmt.Errorf("%w: enable stream %s to verify it", ErrDisabled, s.ID)
	}
	body, err := json.Marshal(posture.VerificationEvent{State: state})
	if err != nil {
		return err
	}
	e, err := t.sign(s.Audience, posture.SubjectID{Format: "opaque", ID: s.ID}, posture.EventVerification, body, "")
	if err != nil {
		return err
	}
	em := &Emission{t: t, pending: map[string][]entry{s.ID: {e}}}
	// The interval is kept on the stream record and checked in the transaction that commits the
	// SET, so that it holds across every server of a database, and two requests at once write
	// one SET.
	now := t.now().UTC()
	n := 0
	err = t.st.Update(ctx, func(tx Tx) error {
		r := tx.Events()
		n = 0
		cur, err := stream(ctx, r, s.ID)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if d := now.Sub(cur.VerifiedAt); !cur.VerifiedAt.IsZero() && d < t.minVerify && d > -t.minVerify {
			return fmt.Errorf("%w: wait %s between verifications of a stream", ErrTooSoon, t.minVerify)
		}
		cur.VerifiedAt = now
		if err := r.PutStream(ctx, cur); err != nil {
			return err
		}
		n, err = em.Commit(ctx, r)
		return err
	})
	if errors.Is(err, ErrTooSoon) {
		return err
	}
	if err != nil {
		return fmt.Errorf("events: commit SETs to the outbox: %w", err)
	}
	em.Sent()
	if n == 0 {
		// The stream was deleted between the lookup and the commit.
		return fmt.Errorf("%w: %s", ErrNotFound, streamID)
	}
	return nil
}

// peek returns up to n of the stream's oldest SETs.
func (t *Transmitter) peek(ctx context.Context, streamID string, n int) ([]QueuedSET, error) {
	var out []QueuedSET
	err := t.st.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Events().Queued(ctx, streamID, n)
		return err
	})
	return out, err
}

// remove deletes one delivered SET and, in the same transaction, notes on the stream what its
// delivery did.
func (t *Transmitter) remove(ctx context.Context, streamID string, seq uint64, note func(*StreamRecord)) error {
	return t.st.Update(ctx, func(tx Tx) error {
		r := tx.Events()
		if err := r.Dequeue(ctx, streamID, seq); err != nil {
			return err
		}
		return noteOn(ctx, r, streamID, note)
	})
}

// noteOn changes the delivery state of a stream through r with note; a deleted stream is left
// deleted.
func noteOn(ctx context.Context, r Repository, streamID string, note func(*StreamRecord)) error {
	rec, err := r.Stream(ctx, streamID)
	if errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	note(rec)
	return r.PutStream(ctx, rec)
}

// Pending returns how many SETs wait in the stream's outbox (0 for an unknown stream).
func (t *Transmitter) Pending(streamID string) int {
	n := 0
	ctx := context.Background()
	_ = t.st.View(ctx, func(tx Tx) error {
		var err error
		n, err = tx.Events().QueueLen(ctx, streamID)
		return err
	})
	return n
}

// signal returns a channel closed at the next change to the stream's outbox. Take it before
// looking at the outbox, so an Emit between the look and the wait is not missed.
func (t *Transmitter) signal(streamID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.signals[streamID]
	if !ok {
		ch = make(chan struct{})
		t.signals[streamID] = ch
	}
	return ch
}

// notify wakes everything waiting on the stream's outbox.
func (t *Transmitter) notify(streamID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.signals[streamID]; ok {
		close(ch)
		delete(t.signals, streamID)
	}
}
