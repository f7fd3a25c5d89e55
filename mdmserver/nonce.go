package mdmserver

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// nonceTTL is how long a report nonce stays usable.
const nonceTTL = 10 * time.Minute

// maxNoncesPerDevice bounds what one device can make the server remember.
const maxNoncesPerDevice = 4

// nonces issues single-use report nonces per device, so a captured report cannot be replayed.
// They live in memory: after a restart an agent's nonce is unknown, it gets 409 nonce-invalid
// and fetches a new one, which costs one round trip and loses nothing.
type nonces struct {
	mu     sync.Mutex
	issued map[string]nonceEntry // nonce → owner
	count  map[string]int        // device → outstanding nonces
	now    func() time.Time
}

type nonceEntry struct {
	device  string
	expires time.Time
}

func newNonces() *nonces {
	return &nonces{issued: map[string]nonceEntry{}, count: map[string]int{}, now: time.Now}
}

// issue returns a new nonce for device, dropping the device's oldest when it has too many.
func (n *nonces) issue(device string) (string, time.Time) {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	nonce := base64.RawURLEncoding.EncodeToString(b)
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	if n.count[device] >= maxNoncesPerDevice || len(n.issued) > 1<<20 {
		n.sweep(now, device)
	}
	exp := now.Add(nonceTTL)
	n.issued[nonce] = nonceEntry{device: device, expires: exp}
	n.count[device]++
	return nonce, exp
}

// use consumes nonce for device; it reports false for an unknown, expired, used or foreign one.
func (n *nonces) use(device, nonce string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.issued[nonce]
	if !ok || e.device != device {
		return false
	}
	delete(n.issued, nonce)
	n.count[device]--
	return n.now().Before(e.expires)
}

// sweep drops expired nonces, and all of device's when it is over its limit.
func (n *nonces) sweep(now time.Time, device string) {
	for k, e := range n.issued {
		if !now.Before(e.expires) || (e.device == device && n.count[device] >= maxNoncesPerDevice) {
			delete(n.issued, k)
			n.count[e.device]--
			if n.count[e.device] <= 0 {
				delete(n.count, e.device)
			}
		}
	}
}
