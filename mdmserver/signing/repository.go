package signing

import (
	"context"
	"errors"
	"time"
)

// ErrKeyNotFound is returned by a Repository asked for a key it does not hold.
var ErrKeyNotFound = errors.New("signing: no such key")

// StoredKey is one signing key as the store keeps it: the private key only sealed.
type StoredKey struct {
	// KID is the key's ID: the RFC 7638 thumbprint of its public key.
	KID string
	// Alg is the JOSE algorithm the key signs with (always ES256 today).
	Alg       string
	CreatedAt time.Time
	// RetiredAt is when the key stopped signing; zero for the current key.
	RetiredAt time.Time
	// SealedKey is the PKCS#8 DER of the private key, sealed for the keyset's seal purpose.
	SealedKey []byte
}

// Repository keeps the signing keys, by kid. It only stores: which key signs, when keys
// retire and when they are deleted is the Keyset's business.
type Repository interface {
	// Keys returns every stored key, ordered by kid.
	Keys(ctx context.Context) ([]StoredKey, error)
	// Key returns the key stored under kid, or ErrKeyNotFound.
	Key(ctx context.Context, kid string) (StoredKey, error)
	// PutKey stores k under k.KID, replacing what was there.
	PutKey(ctx context.Context, k StoredKey) error
	// DeleteKey removes the key stored under kid; a missing key is no error.
	DeleteKey(ctx context.Context, kid string) error
}

// Tx is what the Keyset uses of one unit of work.
type Tx interface {
	Signing() Repository
}

// Store runs the Keyset's units of work (storage.Scope of the server's store satisfies it).
type Store interface {
	// View runs fn on one consistent snapshot; fn must not write.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}
