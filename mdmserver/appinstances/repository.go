// Package appinstances keeps the organisation's messaging app instances: each registered with a
// hardware-backed attestation (iOS App Attest or Android Play Integrity), bound to a Hale device
// by a one-time binding token IT issued, reporting what only the app can see under a fresh
// signature of its own key. Wiping or unenrolling the device revokes its instances.
package appinstances

import (
	"context"
	"errors"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/posture"
)

// Platform is the OS an app instance runs on, which fixes how it proves itself.
type Platform string

const (
	// IOS instances register with an App Attest attestation and sign reports with assertions.
	IOS Platform = "ios"
	// Android instances register with a Play Integrity token bound to their key and sign
	// reports with it (ES256).
	Android Platform = "android"
)

// Instance is one registered app instance.
type Instance struct {
	ID       string   `json:"id"`
	Platform Platform `json:"platform"`
	DeviceID string   `json:"device_id"`
	// KeyID identifies the app's key: Apple's key identifier (base64) on iOS, the RFC 7638
	// thumbprint on Android. It is unique: one key registers once.
	KeyID string `json:"key_id"`
	// PublicKey is the attested key that signs reports, PKIX DER (ECDSA P-256): the App Attest
	// key on iOS, the Android Keystore key on Android.
	PublicKey []byte `json:"public_key"`
	// ProofKey is the key posture tokens are bound to (cnf.jkt) and DPoP proofs signed with,
	// PKIX DER: on iOS a Secure Enclave key the registration's attestation covers (an App Attest
	// key signs only assertions), on Android the Keystore key itself.
	ProofKey []byte `json:"proof_key,omitempty"`
	// Counter is the last accepted App Attest assertion counter (iOS).
	Counter     uint32 `json:"counter,omitempty"`
	Environment string `json:"environment,omitempty"`
	// Receipt is Apple's App Attest receipt, kept for fraud-metric requests to Apple.
	Receipt      []byte    `json:"receipt,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	LastReportAt time.Time `json:"last_report_at,omitzero"`
	// Posture is what the instance last reported, and what Apple or Google last attested.
	Posture *Posture `json:"posture,omitempty"`
	// RevokedAt is set when the instance may no longer report or get tokens.
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	RevokedReason string    `json:"revoked_reason,omitempty"`
}

// JKT is the RFC 7638 thumbprint of the instance's key, which its posture tokens are bound to.
func (i *Instance) JKT() (string, error) {
	der := i.ProofKey
	if der == nil {
		der = i.PublicKey
	}
	pub, err := parseStoredKey(der)
	if err != nil {
		return "", err
	}
	return posture.KeyThumbprint(pub)
}

// Revoked reports whether the instance was revoked.
func (i *Instance) Revoked() bool { return !i.RevokedAt.IsZero() }

// Binding is a one-time binding token IT issued for a device, stored by its hash.
type Binding struct {
	Hash      string    `json:"hash"`
	DeviceID  string    `json:"device_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// UsedBy is the instance the token registered; a used token never registers another.
	UsedBy string    `json:"used_by,omitempty"`
	UsedAt time.Time `json:"used_at,omitzero"`
}

// ErrNotFound is returned for an unknown instance or binding.
var ErrNotFound = errors.New("appinstances: not found")

// Repository stores instances and binding tokens. It only stores and reads: what registration,
// reports and revocation do are this package's functions over it, so every backend keeps the
// same rules. A Repository belongs to one transaction; what it returns are the caller's copies.
type Repository interface {
	// Instance returns instance id, or ErrNotFound.
	Instance(ctx context.Context, id string) (*Instance, error)
	// InstanceByKey returns the instance registered with keyID, or ErrNotFound.
	InstanceByKey(ctx context.Context, keyID string) (*Instance, error)
	// PutInstance stores in under its ID, replacing what was there, and indexes its key and
	// device.
	PutInstance(ctx context.Context, in *Instance) error
	// DeviceInstances returns the instances bound to deviceID, in ID order. Another device's
	// never match, even one whose ID starts with this one.
	DeviceInstances(ctx context.Context, deviceID string) ([]Instance, error)
	// Binding returns the binding token whose hash is hash, or ErrNotFound.
	Binding(ctx context.Context, hash string) (*Binding, error)
	// PutBinding stores b under its hash, replacing what was there.
	PutBinding(ctx context.Context, b *Binding) error
}

// Tx is what this package's units of work need: its repository and the audit log, so that a
// registration and its audit entry commit together.
type Tx interface {
	AppInstances() Repository
	Audit() audit.Repository
}

// Store runs this package's units of work.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
}
