package appinstances

import (
	"encoding/base64"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// NonceTTL is how long a server nonce stays usable: long enough for a phone to ask Apple or
// Google for an attestation, short enough that a captured one is soon worthless.
const NonceTTL = 5 * time.Minute

// maxNonces bounds what unauthenticated callers can make the server remember; past it the
// oldest nonce is dropped, which costs its app one retry.
const maxNonces = 100_000

// Nonces issues one-time server nonces. They live in memory: after a restart an app's nonce is
// unknown, it is refused with nonce-invalid and asks for a new one.
type Nonces struct {
	mu    sync.Mutex
	live  map[string]time.Time
	order []string // issue order, for dropping the oldest
	now   func() time.Time
}

// NewNonces returns an empty set using the clock now.
func NewNonces(now func() time.Time) *Nonces {
	return &Nonces{live: map[string]time.Time{}, now: now}
}

// Issue returns a new nonce and when it expires.
func (n *Nonces) Issue() (string, time.Time) {
	nonce := base64.RawURLEncoding.EncodeToString(randid.Bytes(24))
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for len(n.order) > 0 && (len(n.live) >= maxNonces || !now.Before(n.live[n.order[0]])) {
		delete(n.live, n.order[0])
		n.order = n.order[1:]
	}
	exp := now.Add(NonceTTL)
	n.live[nonce] = exp
	n.order = append(n.order, nonce)
	return nonce, exp
}

// Use consumes nonce; it reports false for an unknown, expired or already used one.
func (n *Nonces) Use(nonce string) bool {
	if len(nonce) != 32 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.live[nonce]
	if !ok {
		return false
	}
	// Its entry in order goes when it reaches the front: a used nonce's is dropped at once.
	delete(n.live, nonce)
	return n.now().Before(exp)
}
