// Package seal encrypts Hale's secrets at rest (CA keys, the APNs push key, lock and wipe PINs)
// with XChaCha20-Poly1305 under one 32-byte master key.
//
// Every sealed value is bound to a purpose string (its AEAD associated data), so a ciphertext
// copied from one slot of the store into another does not open.
package seal

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a master key in bytes.
const KeySize = chacha20poly1305.KeySize

// version prefixes every sealed value so the format can change without guessing.
const version byte = 1

// ErrOpen is returned when a sealed value cannot be opened: wrong master key, wrong purpose,
// or a value that was changed.
var ErrOpen = errors.New("seal: cannot open sealed value (wrong master key, wrong purpose, or tampered data)")

// Key seals and opens secrets. It is safe for concurrent use.
type Key struct {
	key [KeySize]byte
}

// New returns a Key for the 32 raw bytes in key.
func New(key []byte) (*Key, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: master key must be %d bytes, got %d", KeySize, len(key))
	}
	k := &Key{}
	copy(k.key[:], key)
	return k, nil
}

// Parse reads a master key written as 64 hex digits or as standard or URL-safe base64 of 32
// bytes, the forms accepted in HALE_MASTER_KEY and in key files. Surrounding space is ignored.
func Parse(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return New(b)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return New(b)
		}
	}
	return nil, errors.New("seal: master key must be 32 bytes written as 64 hex digits or base64")
}

// LoadOrCreate reads the master key file at path, or creates it with a new random key (mode 0600,
// its directory 0700) when it does not exist. A key file readable by group or others is refused:
// a leaked master key opens every sealed secret.
func LoadOrCreate(path string) (*Key, error) {
	k, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	return k, err
}

// Load reads the master key file at path and never creates one: a missing file is an error that
// wraps fs.ErrNotExist. A key file readable by group or others is refused.
func Load(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: read master key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("seal: master key file %s has mode %v; run chmod 600 on it", path, fi.Mode().Perm())
	}
	return Parse(string(b))
}

func create(path string) (*Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("seal: create key directory: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a different key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreate(path)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: create master key: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(raw) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal: write master key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal: sync master key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return New(raw)
}

// Seal encrypts plaintext for purpose (for example "ca/intermediate.key").
func (k *Key) Seal(purpose string, plaintext []byte) []byte {
	aead, _ := chacha20poly1305.NewX(k.key[:]) // cannot fail: the key length is fixed
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		panic("seal: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return aead.Seal(out, out[1:], plaintext, []byte(purpose))
}

// Open decrypts a value made by Seal with the same purpose.
func (k *Key) Open(purpose string, sealed []byte) ([]byte, error) {
	aead, _ := chacha20poly1305.NewX(k.key[:])
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	nonce, ct := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, []byte(purpose))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Derive returns a 32-byte key for purpose derived from the master key with HKDF-SHA256, for
// secrets that must survive restarts without being stored (the MAC key of URLs the server hands
// out). Different purposes give unrelated keys.
func (k *Key) Derive(purpose string) []byte {
	out, err := hkdf.Key(sha256.New, k.key[:], nil, "hale/seal/derive/"+purpose, 32)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // cannot fail for a 32-byte output
	}
	return out
}
