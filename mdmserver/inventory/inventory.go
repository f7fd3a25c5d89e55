// Package inventory keeps Hale's device records: one per enrolled device, with its owner, group,
// identifiers, certificate serials and lifecycle state, in bbolt.
//
// Records are keyed by device ID; two index buckets find a device by its nanomdm enrollment ID and
// by the serial of any certificate it was issued, so an mTLS request resolves its device with one
// lookup. Every write keeps the record and its index entries in one transaction; the *Tx methods
// let a caller add its own writes (an audit entry, say) to that transaction.
package inventory

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/text"
)

// Platform is how a device is managed.
type Platform string

// The management platforms.
const (
	PlatformApple Platform = "apple" // Apple MDM (nanomdm)
	PlatformAgent Platform = "agent" // the mdmagent daemon
)

// State is a device's lifecycle state.
type State string

// The device states.
const (
	StateActive     State = "active"
	StateLocked     State = "locked"
	StateLost       State = "lost"
	StateWiped      State = "wiped"
	StateUnenrolled State = "unenrolled"
	StateRetired    State = "retired"
)

// States lists every state, for validation and documentation.
var States = []State{StateActive, StateLocked, StateLost, StateWiped, StateUnenrolled, StateRetired}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// transitions is the state machine. Setting the current state again is always a no-op.
//
//	from \ to    active locked lost wiped unenrolled retired
//	active         -      y     y     y       y        y
//	locked         y      -     y     y       y        y
//	lost           y      y     -     y       y        y
//	wiped          .      .     .     -       .        y
//	unenrolled     .      .     .     .       -        y
//	retired        .      .     .     .       .        -
//
// Wiped and unenrolled devices have lost their data or their management, so they cannot come
// back to life: a returning device enrolls anew and gets a new record. Retired is the archive
// state, reachable from anything and final.
var transitions = map[State][]State{
	StateActive:     {StateLocked, StateLost, StateWiped, StateUnenrolled, StateRetired},
	StateLocked:     {StateActive, StateLost, StateWiped, StateUnenrolled, StateRetired},
	StateLost:       {StateActive, StateLocked, StateWiped, StateUnenrolled, StateRetired},
	StateWiped:      {StateRetired},
	StateUnenrolled: {StateRetired},
	StateRetired:    {},
}

// CanTransition reports whether a device may move from one state to another.
func CanTransition(from, to State) bool {
	return from == to && to.Valid() || slices.Contains(transitions[from], to)
}

// Errors.
var (
	ErrNotFound          = errors.New("inventory: no such device")
	ErrInvalidTransition = errors.New("inventory: state transition not allowed")
	ErrConflict          = errors.New("inventory: identifier already belongs to another device")
	ErrInvalid           = errors.New("inventory: invalid device record")
	ErrBadCursor         = errors.New("inventory: malformed cursor; restart listing without one")
)

// Device is one enrolled device.
type Device struct {
	ID       string   `json:"id"`
	Platform Platform `json:"platform"`
	// OS is ios, ipados, macos, windows or linux; empty until known.
	OS     string `json:"os,omitempty"`
	Owner  string `json:"owner"`
	Group  string `json:"group"`
	Serial string `json:"serial,omitempty"`
	UDID   string `json:"udid,omitempty"`
	// EnrollmentID is nanomdm's enrollment ID (Apple devices); unique, indexed.
	EnrollmentID string    `json:"enrollment_id,omitempty"`
	Hostname     string    `json:"hostname,omitempty"`
	EnrolledAt   time.Time `json:"enrolled_at"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	// CertSerials are the serials (lower-case hex, no leading zeros) of every certificate issued
	// to the device; unique across devices, indexed.
	CertSerials []string `json:"cert_serials,omitempty"`
	// CertSHA256 are the SHA-256 fingerprints (lower-case hex of the DER) of the same
	// certificates, for the access API's lookups by fingerprint.
	CertSHA256     []string  `json:"cert_sha256,omitempty"`
	State          State     `json:"state"`
	StateChangedAt time.Time `json:"state_changed_at"`
	// Enrollment is the ID of the enroll record the device used.
	Enrollment string `json:"enrollment,omitempty"`
}

// Limits that keep one record small.
const (
	maxText        = 256
	MaxCertSerials = 256 // a device renewing monthly stays well below this for its lifetime
)

var (
	bucketDevices      = []byte("inventory_devices")
	bucketByEnrollment = []byte("inventory_by_enrollment") // nanomdm enrollment id -> device id
	bucketByCert       = []byte("inventory_by_cert")       // cert serial hex -> device id
)

// Store keeps device records in bbolt.
type Store struct {
	db  *bbolt.DB
	now func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for enrolled_at and state_changed_at defaults (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on db, creating its buckets.
func New(db *bbolt.DB, opts ...Option) (*Store, error) {
	s := &Store{db: db, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketDevices, bucketByEnrollment, bucketByCert} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inventory: create buckets: %w", err)
	}
	return s, nil
}

// NewID returns a fresh device ID, "d_" and 16 hex digits. Callers that must know the ID before
// the record exists (the agent enrollment redeems its token for it) pass it to Create.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+)
	return "d_" + hex.EncodeToString(b)
}

// ValidID reports whether id has the shape NewID produces.
func ValidID(id string) bool {
	h, ok := strings.CutPrefix(id, "d_")
	if !ok || len(h) != 16 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// SerialHex formats a certificate serial the way the store indexes it.
func SerialHex(serial *big.Int) string { return serial.Text(16) }

// NormalizeSerial turns a hex serial in any common spelling ("0A:1B", "0x0a1b", "A1B") into the
// indexed form, or reports false.
func NormalizeSerial(s string) (string, bool) {
	s = strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(s), "0x"), ":", "")
	// RFC 5280 allows at most 20 octets; leave slack for non-conforming CAs, refuse junk.
	if s == "" || len(s) > 64 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", false
	}
	n, _ := new(big.Int).SetString(s, 16)
	return n.Text(16), true
}

// Create stores a new device. An empty ID gets NewID; an empty State is active; zero EnrolledAt
// and StateChangedAt are now. The record is committed before Create returns.
func (s *Store) Create(ctx context.Context, d Device) (*Device, error) {
	if d.ID == "" {
		d.ID = NewID()
	}
	now := s.now().UTC()
	if d.State == "" {
		d.State = StateActive
	}
	if d.EnrolledAt.IsZero() {
		d.EnrolledAt = now
	}
	if d.StateChangedAt.IsZero() {
		d.StateChangedAt = d.EnrolledAt
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketDevices).Get([]byte(d.ID)) != nil {
			return fmt.Errorf("%w: device id %s exists", ErrConflict, d.ID)
		}
		return s.PutTx(tx, &d)
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Get returns the device with id.
func (s *Store) Get(ctx context.Context, id string) (*Device, error) {
	var d *Device
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		d, err = s.GetTx(tx, id)
		return err
	})
	return d, err
}

// GetTx returns the device with id inside the caller's transaction.
func (s *Store) GetTx(tx *bbolt.Tx, id string) (*Device, error) {
	v := tx.Bucket(bucketDevices).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	return decode(id, v)
}

// GetByEnrollmentID returns the device with nanomdm enrollment ID eid.
func (s *Store) GetByEnrollmentID(ctx context.Context, eid string) (*Device, error) {
	return s.getByIndex(bucketByEnrollment, eid)
}

// GetByCertSerial returns the device a certificate with this serial was issued to. serial may
// be any spelling NormalizeSerial accepts. Serials stay indexed for the device's lifetime, so the
// caller must still check the device's State (and the certificate's revocation).
func (s *Store) GetByCertSerial(ctx context.Context, serial string) (*Device, error) {
	sn, ok := NormalizeSerial(serial)
	if !ok {
		return nil, ErrNotFound
	}
	return s.getByIndex(bucketByCert, sn)
}

// GetByEnrollmentIDTx is GetByEnrollmentID inside tx.
func (s *Store) GetByEnrollmentIDTx(tx *bbolt.Tx, eid string) (*Device, error) {
	return s.getByIndexTx(tx, bucketByEnrollment, eid)
}

func (s *Store) getByIndex(index []byte, key string) (*Device, error) {
	var d *Device
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		d, err = s.getByIndexTx(tx, index, key)
		return err
	})
	return d, err
}

func (s *Store) getByIndexTx(tx *bbolt.Tx, index []byte, key string) (*Device, error) {
	if key == "" {
		return nil, ErrNotFound
	}
	id := tx.Bucket(index).Get([]byte(key))
	if id == nil {
		return nil, ErrNotFound
	}
	d, err := s.GetTx(tx, string(id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("inventory: index %s points %q at missing device %s", index, key, id)
	}
	return d, err
}

// Update applies fn to the device with id and stores the result, in one transaction. fn may change
// anything but the ID and EnrolledAt; state changes must follow the transition table, and if fn
// changes State without touching StateChangedAt, it is stamped with the store's clock. If fn
// returns an error nothing is written.
func (s *Store) Update(ctx context.Context, id string, fn func(*Device) error) (*Device, error) {
	return s.update(id, fn, true)
}

func (s *Store) update(id string, fn func(*Device) error, stamp bool) (*Device, error) {
	var d *Device
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		d, err = s.updateTx(tx, id, fn, stamp)
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// UpdateTx is Update inside the caller's write transaction.
func (s *Store) UpdateTx(tx *bbolt.Tx, id string, fn func(*Device) error) (*Device, error) {
	return s.updateTx(tx, id, fn, true)
}

func (s *Store) updateTx(tx *bbolt.Tx, id string, fn func(*Device) error, stamp bool) (*Device, error) {
	d, err := s.GetTx(tx, id)
	if err != nil {
		return nil, err
	}
	before := *d
	if err := fn(d); err != nil {
		return nil, err
	}
	if d.ID != id {
		return nil, fmt.Errorf("%w: the device id cannot change", ErrInvalid)
	}
	if stamp && d.State != before.State && d.StateChangedAt.Equal(before.StateChangedAt) {
		d.StateChangedAt = s.now().UTC()
	}
	if err := s.PutTx(tx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// PutTx validates d and writes it with its index entries inside the caller's write transaction,
// creating or replacing the record. Against the stored record it enforces the state transition
// table, keeps EnrolledAt, and moves index entries. The caller sets StateChangedAt when it changes
// State (zero is stamped with the store's clock). d's serials are normalized in place.
func (s *Store) PutTx(tx *bbolt.Tx, d *Device) error {
	if err := d.normalize(); err != nil {
		return err
	}
	if d.StateChangedAt.IsZero() {
		d.StateChangedAt = s.now().UTC()
	}
	devices := tx.Bucket(bucketDevices)
	old := &Device{}
	if v := devices.Get([]byte(d.ID)); v != nil {
		var err error
		if old, err = decode(d.ID, v); err != nil {
			return err
		}
		if !CanTransition(old.State, d.State) {
			return fmt.Errorf("%w: %s to %s (device %s)", ErrInvalidTransition, old.State, d.State, d.ID)
		}
		d.EnrolledAt = old.EnrolledAt
	} else if d.EnrolledAt.IsZero() {
		d.EnrolledAt = s.now().UTC()
	}
	if err := reindex(tx.Bucket(bucketByEnrollment), d.ID, oneOrNone(old.EnrollmentID), oneOrNone(d.EnrollmentID)); err != nil {
		return err
	}
	if err := reindex(tx.Bucket(bucketByCert), d.ID, old.CertSerials, d.CertSerials); err != nil {
		return err
	}
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return devices.Put([]byte(d.ID), v)
}

// reindex moves index entries of device id from the old keys to the new ones. A new key that
// already names another device is a conflict: an identifier belongs to one device.
func reindex(b *bbolt.Bucket, id string, old, new []string) error {
	for _, k := range new {
		if cur := b.Get([]byte(k)); cur != nil && string(cur) != id {
			return fmt.Errorf("%w: %q belongs to device %s", ErrConflict, k, cur)
		}
	}
	for _, k := range old {
		if !slices.Contains(new, k) {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for _, k := range new {
		if err := b.Put([]byte(k), []byte(id)); err != nil {
			return err
		}
	}
	return nil
}

func oneOrNone(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// CertFingerprint is the SHA-256 of a certificate's DER in lower-case hex: the form CertSHA256
// keeps and the access API accepts.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// AddCert records that cert was issued to device id: its serial and its fingerprint. Adding a
// certificate the device has is a no-op; one whose serial belongs to another device is
// ErrConflict.
func (s *Store) AddCert(ctx context.Context, id string, cert *x509.Certificate) (*Device, error) {
	return s.Update(ctx, id, func(d *Device) error { d.RecordCert(cert); return nil })
}

// RecordCert notes on d that cert was issued to it: its serial and its fingerprint, each once.
// It is the one place the two lists grow, so they always name the same certificates.
func (d *Device) RecordCert(cert *x509.Certificate) {
	if sn := SerialHex(cert.SerialNumber); !slices.Contains(d.CertSerials, sn) {
		d.CertSerials = append(d.CertSerials, sn)
	}
	if fp := CertFingerprint(cert); !slices.Contains(d.CertSHA256, fp) {
		d.CertSHA256 = append(d.CertSHA256, fp)
	}
}

// AddCertSerial records that a certificate with serial was issued to device id. Adding a serial
// the device has is a no-op; one that belongs to another device is ErrConflict.
func (s *Store) AddCertSerial(ctx context.Context, id, serial string) (*Device, error) {
	sn, ok := NormalizeSerial(serial)
	if !ok {
		return nil, fmt.Errorf("%w: certificate serial %q is not hex", ErrInvalid, serial)
	}
	return s.Update(ctx, id, func(d *Device) error {
		if !slices.Contains(d.CertSerials, sn) {
			d.CertSerials = append(d.CertSerials, sn)
		}
		return nil
	})
}

// SetState moves device id to state at time at, following the transition table. Setting the
// current state again changes nothing.
func (s *Store) SetState(ctx context.Context, id string, state State, at time.Time) (*Device, error) {
	if !state.Valid() {
		return nil, fmt.Errorf("%w: unknown state %q (want one of %v)", ErrInvalid, state, States)
	}
	return s.update(id, func(d *Device) error {
		if d.State == state {
			return nil
		}
		if !CanTransition(d.State, state) {
			return fmt.Errorf("%w: %s to %s (device %s)", ErrInvalidTransition, d.State, state, d.ID)
		}
		d.State, d.StateChangedAt = state, at.UTC()
		return nil
	}, false)
}

// Touch records that device id was seen at time at. It never moves last_seen backwards. Touches
// from many requests are coalesced into few transactions (bbolt Batch), so it is cheap to call
// on every authenticated request; it returns once the write is committed.
func (s *Store) Touch(ctx context.Context, id string, at time.Time) error {
	at = at.UTC()
	// Batch may run the function more than once: it only ever moves LastSeen forward to at, so
	// running it again is harmless.
	return s.db.Batch(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		d, err := decode(id, v)
		if err != nil {
			return err
		}
		if !at.After(d.LastSeen) {
			return nil
		}
		d.LastSeen = at
		nv, err := json.Marshal(d)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
}

// Filter selects devices; empty fields match everything.
type Filter struct {
	State State
	Group string
	Owner string
}

func (f Filter) empty() bool { return f == Filter{} }

// Validate reports a filter that can match nothing because its state is unknown.
func (f Filter) Validate() error {
	if f.State != "" && !f.State.Valid() {
		return fmt.Errorf("%w: filter state %q is not one of %v", ErrInvalid, f.State, States)
	}
	return nil
}

func (f Filter) match(d *filterFields) bool {
	return (f.State == "" || d.State == f.State) && (f.Group == "" || d.Group == f.Group) &&
		(f.Owner == "" || d.Owner == f.Owner)
}

// filterFields is the part of a record a filter looks at; decoding only these is cheaper than a
// whole Device.
type filterFields struct {
	State State  `json:"state"`
	Group string `json:"group"`
	Owner string `json:"owner"`
}

// Paging limits of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// List returns up to limit devices matching f, in ID order, starting after cursor (empty: from
// the start), and the cursor of the next page (empty: no more matches). limit <= 0 means
// DefaultLimit; more than MaxLimit is MaxLimit. Cursors are opaque and stay valid while devices
// are added or changed: each device present for the whole listing is returned exactly once.
func (s *Store) List(ctx context.Context, f Filter, cursor string, limit int) ([]Device, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	var out []Device
	next := ""
	err = s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDevices).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var ff filterFields
			if err := json.Unmarshal(v, &ff); err != nil {
				return fmt.Errorf("inventory: decode device %s: %w", k, err)
			}
			if !f.match(&ff) {
				continue
			}
			if len(out) == limit {
				// One more match exists: there is a next page.
				next = encodeCursor(out[len(out)-1].ID)
				return nil
			}
			d, err := decode(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, *d)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Count returns how many devices match f.
func (s *Store) Count(ctx context.Context, f Filter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		if f.empty() {
			n = b.Stats().KeyN
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var ff filterFields
			if err := json.Unmarshal(v, &ff); err != nil {
				return fmt.Errorf("inventory: decode device %s: %w", k, err)
			}
			if f.match(&ff) {
				n++
			}
			return nil
		})
	})
	return n, err
}

// forEachChunk is how many records ForEach reads per read transaction.
const forEachChunk = 512

// ForEach calls fn for every device in ID order, stopping at the first error. It reads in chunks,
// each in its own short read transaction, and calls fn outside any transaction: fn may write to
// the database (a long read transaction would block bbolt from growing its file, deadlocking a
// writer in the same goroutine). A device added or changed during the pass may or may not be seen
// in its new form; every device present throughout is seen exactly once.
func (s *Store) ForEach(ctx context.Context, fn func(*Device) error) error {
	var after []byte
	chunk := make([]*Device, 0, forEachChunk)
	for {
		chunk = chunk[:0]
		err := s.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketDevices).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(chunk) < forEachChunk; k, v = c.Next() {
				d, err := decode(string(k), v)
				if err != nil {
					return err
				}
				chunk = append(chunk, d)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(chunk) < forEachChunk {
			return nil
		}
		after = []byte(chunk[len(chunk)-1].ID)
	}
}

// cursorPrefix versions the cursor format so it can change without misreading old cursors.
const cursorPrefix = "v1:"

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	if len(c) > 128 {
		return "", ErrBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", ErrBadCursor
	}
	id, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok || !ValidID(id) {
		return "", ErrBadCursor
	}
	return id, nil
}

func decode(id string, v []byte) (*Device, error) {
	d := new(Device)
	if err := json.Unmarshal(v, d); err != nil {
		return nil, fmt.Errorf("inventory: decode device %s: %w", id, err)
	}
	return d, nil
}

// normalize validates d and canonicalizes its certificate serials.
func (d *Device) normalize() error {
	var errs []error
	if !ValidID(d.ID) {
		errs = append(errs, fmt.Errorf("id %q is not d_ and 16 lower-case hex digits", d.ID))
	}
	if d.Platform != PlatformApple && d.Platform != PlatformAgent {
		errs = append(errs, fmt.Errorf("platform %q is not %q or %q", d.Platform, PlatformApple, PlatformAgent))
	}
	if !d.State.Valid() {
		errs = append(errs, fmt.Errorf("state %q is not one of %v", d.State, States))
	}
	for _, f := range []struct{ name, v string }{
		{"os", d.OS}, {"owner", d.Owner}, {"group", d.Group}, {"serial", d.Serial}, {"udid", d.UDID},
		{"enrollment_id", d.EnrollmentID}, {"hostname", d.Hostname}, {"enrollment", d.Enrollment},
	} {
		if len(f.v) > maxText || !text.Printable(f.v) {
			errs = append(errs, fmt.Errorf("%s must be printable text up to %d bytes", f.name, maxText))
		}
	}
	if len(d.CertSerials) > MaxCertSerials {
		errs = append(errs, fmt.Errorf("more than %d certificate serials", MaxCertSerials))
	}
	if len(d.CertSHA256) > MaxCertSerials {
		errs = append(errs, fmt.Errorf("more than %d certificate fingerprints", MaxCertSerials))
	}
	for _, fp := range d.CertSHA256 {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size || strings.ToLower(fp) != fp {
			errs = append(errs, fmt.Errorf("certificate fingerprint %q is not lower-case hex SHA-256", fp))
		}
	}
	serials := make([]string, 0, len(d.CertSerials))
	for _, raw := range d.CertSerials {
		sn, ok := NormalizeSerial(raw)
		if !ok {
			errs = append(errs, fmt.Errorf("certificate serial %q is not hex", raw))
			continue
		}
		if !slices.Contains(serials, sn) {
			serials = append(serials, sn)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d.CertSerials = serials
	if len(serials) == 0 {
		d.CertSerials = nil
	}
	return nil
}
