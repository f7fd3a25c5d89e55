package console

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/halemdm/hale/internal/seal"
)

// A sign-in through the provider is in flight between oidcStart and oidcCallback: its state,
// nonce and PKCE verifier must be found again when the provider sends the browser back. With a
// seal key (WithSealKey) they travel in the browser's cookie, sealed, so the callback may reach
// any server of a database; without one they wait in this server's memory, bound to the
// browser by a random cookie, and the load balancer must send the callback to the server that
// started it (source affinity).

// WithSealKey gives the console the key it seals what it hands the browser with (the server's
// key, derived for this purpose). With it an OIDC sign-in in flight is carried in its cookie
// rather than in this server's memory.
func WithSealKey(k *seal.Key) Option { return func(c *Console) { c.sealKey = k } }

// oidcSealPurpose binds sealed sign-ins to this use of the key.
const oidcSealPurpose = "hale/console-oidc-pending"

// maxOIDCCookie bounds the cookie opened: a sealed sign-in is a few hundred bytes.
const maxOIDCCookie = 2048

// sealedPending is a sign-in in flight as its cookie carries it.
type sealedPending struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	At       time.Time `json:"t"`
}

// sealPending returns the cookie value carrying p, started with state.
func (c *Console) sealPending(state string, p *pendingLogin) string {
	b, _ := json.Marshal(sealedPending{State: state, Nonce: p.nonce, Verifier: p.verifier, At: p.at})
	return base64.RawURLEncoding.EncodeToString(c.sealKey.Seal(oidcSealPurpose, b))
}

// openPending returns the sign-in ck carries when it was started with state, or nil. The
// state must match: a callback is accepted only in the browser that started it.
func (c *Console) openPending(state string, ck *http.Cookie) *pendingLogin {
	if ck == nil || state == "" || len(ck.Value) > maxOIDCCookie {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil {
		return nil
	}
	b, err := c.sealKey.Open(oidcSealPurpose, raw)
	if err != nil {
		return nil
	}
	var sp sealedPending
	if json.Unmarshal(b, &sp) != nil || !sameToken(sp.State, state) || sp.Nonce == "" || sp.Verifier == "" {
		return nil
	}
	return &pendingLogin{nonce: sp.Nonce, verifier: sp.Verifier, at: sp.At}
}

// keepPending puts p in this server's table under state; false when the table is full.
func (c *Console) keepPending(state string, p *pendingLogin) bool {
	o := c.oidc
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, old := range o.pending {
		if c.now().Sub(old.at) > pendingTTL {
			delete(o.pending, k)
		}
	}
	if len(o.pending) >= maxPending {
		return false
	}
	o.pending[state] = p
	return true
}

// takePending takes the sign-in started with state out of this server's table (one use,
// whatever happens next) and returns it when ck is the cookie of the browser that started it.
func (c *Console) takePending(state string, ck *http.Cookie) *pendingLogin {
	o := c.oidc
	o.mu.Lock()
	p := o.pending[state]
	delete(o.pending, state)
	o.mu.Unlock()
	if p == nil || ck == nil || !sameToken(hashKey(ck.Value), p.binding) {
		return nil
	}
	return p
}
