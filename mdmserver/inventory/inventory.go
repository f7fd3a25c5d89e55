// Package inventory keeps Hale's device records: one per enrolled device, with its owner, group,
// identifiers, certificate serials, lifecycle state and any unfinished wipe.
//
// A [Repository] stores the records and finds a device by its nanomdm enrollment ID and by the
// serial of any certificate it was issued, so an mTLS request resolves its device with one
// lookup. The rules (validation, the state transition table, one owner per identifier, wipe
// status) are the functions of this package over a Repository ([Create], [Update], [SetState],
// [LinkEnrollment], ...), so every storage backend shares them; call them inside a unit of work
// to commit a device change with the caller's other writes (an audit entry, say). [Service] runs
// each of them as a unit of work of its own.
package inventory

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/text"
)

// Platform is how a device is managed.
type Platform string

// The management platforms.
const (
	PlatformApple Platform = "apple" // Apple MDM (nanomdm)
	PlatformAgent Platform = "agent" // the mdmagent daemon
	// PlatformAndroid is the Android Management API.
	PlatformAndroid Platform = "android"
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
	// UserEnrollment marks a personal Apple device enrolled through account-driven User
	// Enrollment: no full erase; its "wipe" removes the enrollment and the managed data.
	UserEnrollment bool `json:"user_enrollment,omitempty"`
	// Wipe is the device's unfinished wipe, nil when it has none: a wipe ordered and not yet
	// answered, or one that left managed data behind. Either denies the device access.
	Wipe *WipeStatus `json:"wipe,omitempty"`
	// AgentVersion is the version mdmagent last reported (agents only; empty before agents
	// reported one).
	AgentVersion string `json:"agent_version,omitempty"`
}

// Limits that keep one record small.
const (
	maxText        = 256
	MaxCertSerials = 256 // a device renewing monthly stays well below this for its lifetime
)

// NewID returns a fresh device ID, "d_" and 16 hex digits. Callers that must know the ID before
// the record exists (the agent enrollment redeems its token for it) pass it to Create.
func NewID() string {
	return "d_" + randid.Hex(8)
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

// SerialHex formats a certificate serial the way the inventory indexes it.
func SerialHex(serial *big.Int) string { return serial.Text(16) }

// ParseSerialHex reads a serial in the form SerialHex writes it; ok is false when s is not hex.
func ParseSerialHex(s string) (serial *big.Int, ok bool) { return new(big.Int).SetString(s, 16) }

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

// CertFingerprint is the SHA-256 of a certificate's DER in lower-case hex: the form CertSHA256
// keeps and the access API accepts.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
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

// normalize validates d and canonicalizes its certificate serials.
func (d *Device) normalize() error {
	var errs []error
	if !ValidID(d.ID) {
		errs = append(errs, fmt.Errorf("id %q is not d_ and 16 lower-case hex digits", d.ID))
	}
	if d.Platform != PlatformApple && d.Platform != PlatformAgent && d.Platform != PlatformAndroid {
		errs = append(errs, fmt.Errorf("platform %q is not %q, %q or %q", d.Platform, PlatformApple, PlatformAgent, PlatformAndroid))
	}
	if !d.State.Valid() {
		errs = append(errs, fmt.Errorf("state %q is not one of %v", d.State, States))
	}
	for _, f := range []struct{ name, v string }{
		{"os", d.OS}, {"owner", d.Owner}, {"group", d.Group}, {"serial", d.Serial}, {"udid", d.UDID},
		{"enrollment_id", d.EnrollmentID}, {"hostname", d.Hostname}, {"enrollment", d.Enrollment},
		{"agent_version", d.AgentVersion},
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
	if err := d.Wipe.validate(); err != nil {
		errs = append(errs, err)
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
