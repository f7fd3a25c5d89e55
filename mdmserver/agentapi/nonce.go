package agentapi

import (
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// nonceTTL is how long a report nonce stays usable.
const nonceTTL = 10 * time.Minute

// maxNoncesPerDevice bounds what one device can make the server remember.
const maxNoncesPerDevice = 4

// Nonces issues single-use report nonces per device, so a captured report cannot be replayed.
// They live in memory: after a restart an agent's nonce is unknown, it gets 409 nonce-invalid
// and fetches a new one, which costs one round trip and loses nothing.
//
// Nonces are kept per device, oldest first, at most maxNoncesPerDevice each: issuing and using
// one touches only that device's few entries, so no request pays for the size of the fleet.
type Nonces struct {
	mu       sync.Mutex
	byDevice map[string][]nonceEntry
	// sweepAt is the map size at which devices holding only expired nonces are dropped; it
	// doubles with the live size, so sweeping costs amortised O(1) per issue.
	sweepAt int
	now     func() time.Time
}

type nonceEntry struct {
	nonce   string
	expires time.Time
}

const minNonceSweep = 1024

// NewNonces returns an empty set of nonces.
func NewNonces() *Nonces {
	return &Nonces{byDevice: map[string][]nonceEntry{}, sweepAt: minNonceSweep, now: time.Now}
}

// Issue returns a new nonce for device and when it expires, dropping the device's oldest when
// it has too many.
func (n *Nonces) Issue(device string) (string, time.Time) {
	nonce := base64.RawURLEncoding.EncodeToString(randid.Bytes(18))
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	held := unexpired(n.byDevice[device], now)
	if len(held) >= maxNoncesPerDevice {
		held = held[len(held)-maxNoncesPerDevice+1:]
	}
	exp := now.Add(nonceTTL)
	// A fresh slice: held may share its array with the old entry.
	n.byDevice[device] = append(append(make([]nonceEntry, 0, len(held)+1), held...), nonceEntry{nonce, exp})
	if len(n.byDevice) >= n.sweepAt {
		n.sweep(now)
	}
	return nonce, exp
}

// Use consumes nonce for device; it reports false for an unknown, expired, used or foreign one.
func (n *Nonces) Use(device, nonce string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	held := n.byDevice[device]
	for i, e := range held {
		if subtle.ConstantTimeCompare([]byte(e.nonce), []byte(nonce)) == 1 {
			rest := append(held[:i:i], held[i+1:]...)
			if len(rest) == 0 {
				delete(n.byDevice, device)
			} else {
				n.byDevice[device] = rest
			}
			return n.now().Before(e.expires)
		}
	}
	return false
}

// sweep drops the devices whose nonces all expired.
func (n *Nonces) sweep(now time.Time) {
	for device, held := range n.byDevice {
		if len(unexpired(held, now)) == 0 {
			delete(n.byDevice, device)
		}
	}
	n.sweepAt = max(minNonceSweep, 2*len(n.byDevice))
}

// unexpired returns the tail of held (oldest first) that has not expired at now.
func unexpired(held []nonceEntry, now time.Time) []nonceEntry {
	for i, e := range held {
		if now.Before(e.expires) {
			return held[i:]
		}
	}
	return nil
}
