// Package events is Hale's OpenID Shared Signals (SSF 1.0) transmitter: it turns what happens
// to a device (its access decision flips; it is locked, lost, wiped or revoked) into CAEP
// Security Event Tokens and gets them to the configured receivers, by push (RFC 8935) or by
// poll (RFC 8936).
//
// Every SET is committed to a bbolt outbox before Emit returns, so an acknowledged event
// survives a crash, and stays there until the receiver has taken it: a push receiver answered
// 2xx (or rejected it as invalid), a poll receiver acknowledged its jti.
//
// Receivers manage their streams with the SSF 1.0 stream API (api.go). A stream belongs to the
// credential that created it: no other receiver can see, poll or change it. Push delivery
// connects only to public addresses, or to those the operator allows (dest.go), so a stream
// cannot aim Hale, and the receiver's Authorization header, at the network inside.
package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

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

// Bucket names.
var (
	streamsBucket = []byte("ssf_streams") // stream ID → record JSON
	// outboxBucket holds streamID 0x00 seq(16 bytes, big endian) → entry JSON, so a stream's
	// SETs are contiguous and in the order they were emitted.
	outboxBucket = []byte("ssf_outbox")
	// subjectsBucket holds streamID 0x00 deviceID → a subject marker (see subjects.go).
	subjectsBucket = []byte("ssf_subjects")
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

// entry is one SET waiting in the outbox.
type entry struct {
	JTI string `json:"jti"`
	SET string `json:"set"`
}

// Transmitter emits SETs into the outbox and delivers them. It is safe for concurrent use.
type Transmitter struct {
	db     *bbolt.DB
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

	mu       sync.Mutex
	signals  map[string]chan struct{} // stream ID → closed on the next change to its outbox
	status   map[string]*deliveryStatus
	verified map[string]time.Time // stream ID → when its last verification was asked for
	running  bool
	changed  chan struct{} // a stream was created, changed or deleted; Run reconciles deliverers
}

// deliveryStatus is the in-memory delivery state of a stream, reported on read.
type deliveryStatus struct {
	lastDeliveredAt time.Time
	lastError       string
	lastErrorAt     time.Time
}

// New returns a Transmitter storing its streams and outbox in db. issuer is the "iss" of every
// SET and the base of the URLs in the SSF configuration; key seals receivers' Authorization
// headers at rest.
func New(db *bbolt.DB, signer Signer, issuer string, key *seal.Key, opts ...Option) (*Transmitter, error) {
	switch {
	case db == nil:
		return nil, errors.New("events: nil bbolt database")
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
		db:         db,
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
		status:     map[string]*deliveryStatus{},
		verified:   map[string]time.Time{},
		changed:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(t)
	}
	t.client = t.newClient()
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{streamsBucket, outboxBucket, subjectsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("events: create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
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
	return json.Marshal(b)
}

// sign builds and signs one SET for aud about subject.
func (t *Transmitter) sign(aud string, sub posture.SubjectID, eventType string, body json.RawMessage, txn string) (entry, error) {
	jti := randomHex(16)
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
func (t *Transmitter) Emit(ctx context.Context, evs ...Event) error {
	return t.EmitWith(ctx, nil, evs...)
}

// EmitWith is Emit with more writes in the same transaction: also runs inside the transaction
// that commits the SETs (even when no stream wants them), so a record of the emission, such as
// an audit entry, commits if and only if the SETs do. It is told how many streams the SETs go
// to: zero means no backend will hear of them.
func (t *Transmitter) EmitWith(ctx context.Context, also func(tx *bbolt.Tx, streams int) error, evs ...Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, ev := range evs {
		if err := validateEvent(ev); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		return nil
	}
	// Which stream gets which event: its status, its event types and its subjects.
	var streams []record
	var gets map[string][]bool // stream ID → per event, whether it goes there
	err := t.db.View(func(tx *bbolt.Tx) error {
		recs, err := recordsTx(tx)
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
				g[j] = rec.wants(ev.Type) && includes(tx, rec, ev.DeviceID)
			}
			gets[rec.ID] = g
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Sign outside the write transaction so that signing does not hold bbolt's writer lock.
	pending := map[string][]entry{}
	for _, s := range streams {
		for j, ev := range evs {
			if !gets[s.ID][j] {
				continue
			}
			body, err := t.body(ev)
			if err != nil {
				return fmt.Errorf("events: encode event: %w", err)
			}
			e, err := t.sign(s.Audience, posture.SubjectID{Format: "opaque", ID: ev.DeviceID}, ev.Type, body, ev.TXN)
			if err != nil {
				return err
			}
			pending[s.ID] = append(pending[s.ID], e)
		}
	}
	_, err = t.commit(pending, also)
	return err
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
	s, err := t.record(streamID)
	if err != nil {
		return err
	}
	if !caller.owns(s) {
		return notFound(streamID)
	}
	if s.status() == StatusDisabled {
		return fmt.Errorf("%w: enable stream %s to verify it", ErrDisabled, s.ID)
	}
	now := t.now()
	t.mu.Lock()
	last, ok := t.verified[s.ID]
	if ok && now.Sub(last) < t.minVerify {
		t.mu.Unlock()
		return fmt.Errorf("%w: wait %s between verifications of a stream", ErrTooSoon, t.minVerify)
	}
	t.verified[s.ID] = now
	t.mu.Unlock()
	body, err := json.Marshal(posture.VerificationEvent{State: state})
	if err != nil {
		return err
	}
	e, err := t.sign(s.Audience, posture.SubjectID{Format: "opaque", ID: s.ID}, posture.EventVerification, body, "")
	if err != nil {
		return err
	}
	n, err := t.commit(map[string][]entry{s.ID: {e}}, nil)
	if err != nil {
		return err
	}
	if n == 0 {
		// The stream was deleted between the lookup and the commit.
		return fmt.Errorf("%w: %s", ErrNotFound, streamID)
	}
	return nil
}

// commit writes the entries of every stream in one transaction, with also's writes, skipping
// streams deleted since they were read, then wakes their deliverers. It returns how many entries
// it wrote.
func (t *Transmitter) commit(pending map[string][]entry, also func(*bbolt.Tx, int) error) (int, error) {
	if len(pending) == 0 && also == nil {
		return 0, nil
	}
	written := 0
	err := t.db.Update(func(tx *bbolt.Tx) error {
		ob := tx.Bucket(outboxBucket)
		for id := range pending {
			if rec, err := recordTx(tx, id); err != nil || rec.status() == StatusDisabled {
				delete(pending, id) // deleted or disabled since it was read
			}
		}
		if also != nil {
			if err := also(tx, len(pending)); err != nil {
				return err
			}
		}
		for id, es := range pending {
			for _, e := range es {
				seq, err := ob.NextSequence()
				if err != nil {
					return err
				}
				v, err := json.Marshal(e)
				if err != nil {
					return err
				}
				if err := ob.Put(outboxKey(id, seq), v); err != nil {
					return err
				}
				written++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("events: commit SETs to the outbox: %w", err)
	}
	for id := range pending {
		t.notify(id)
	}
	return written, nil
}

// outboxKey is streamID 0x00 followed by seq as 16 bytes big endian.
func outboxKey(streamID string, seq uint64) []byte {
	k := make([]byte, len(streamID)+1+16)
	copy(k, streamID)
	binary.BigEndian.PutUint64(k[len(k)-8:], seq)
	return k
}

func outboxPrefix(streamID string) []byte { return []byte(streamID + "\x00") }

// outboxEntry is an entry with its key, for removal after delivery.
type outboxEntry struct {
	key []byte
	entry
}

// peek returns up to n of the stream's oldest entries.
func (t *Transmitter) peek(streamID string, n int) ([]outboxEntry, error) {
	var out []outboxEntry
	err := t.db.View(func(tx *bbolt.Tx) error {
		prefix := outboxPrefix(streamID)
		c := tx.Bucket(outboxBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, v = c.Next() {
			var e entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("events: corrupt outbox entry %x: %w", k, err)
			}
			out = append(out, outboxEntry{key: bytes.Clone(k), entry: e})
		}
		return nil
	})
	return out, err
}

// remove deletes one delivered entry.
func (t *Transmitter) remove(key []byte) error {
	return t.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(outboxBucket).Delete(key) })
}

// Pending returns how many SETs wait in the stream's outbox (0 for an unknown stream).
func (t *Transmitter) Pending(streamID string) int {
	n := 0
	_ = t.db.View(func(tx *bbolt.Tx) error {
		prefix := outboxPrefix(streamID)
		c := tx.Bucket(outboxBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
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

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b)
}
