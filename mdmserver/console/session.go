package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/tokens"
)

// CookieName is the session cookie. The __Host- prefix makes browsers refuse it unless it is
// Secure, for the whole host (Path=/) and without a Domain: no subdomain can plant or read it.
const CookieName = "__Host-hale_console"

// signinCookie carries the sign-in form's CSRF token before there is a session (a
// double-submit token: the form's hidden field must equal it).
const signinCookie = "__Host-hale_signin"

// errTooManySessions refuses a sign-in when the session table is full of live sessions.
var errTooManySessions = errors.New("console: too many open sessions")

// session is one signed-in browser. Only the SHA-256 of its cookie value is kept, so a reader
// of the table (a heap dump, a debugger) cannot take sessions over; the API token it signed in
// with is kept by ID only and read again on every request, so revoking the token ends the
// session at once.
type session struct {
	key     string // hex SHA-256 of the cookie value
	tokenID string
	// ident is the identity of a person signed in through OpenID Connect (nil for API tokens):
	// the provider cannot be asked again per request, so the session's lifetime bounds it.
	ident *tokens.Token
	// who is the token (or OIDC identity) as it was at sign-in: what the record of an expiry
	// found by the sweeper names.
	who tokens.Token
	// via is how the person signed in: "token" (an API token pasted into the form) or "oidc".
	via string
	// csrf is the token every state-changing form of this session carries.
	csrf     string
	created  time.Time
	lastSeen time.Time
	// flash is a one-time message for the next page (the outcome of an action), kept here
	// rather than in the redirect's URL.
	flash     string
	flashKind string
}

// sessions is the session table, in memory: sessions end when the server restarts, and a
// deployment of several servers needs sticky routing to one node (documented in the README).
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	max  int
}

func newSessions(max int) *sessions { return &sessions{byID: map[string]*session{}, max: max} }

// randomToken returns 32 random bytes, URL-safe base64.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// create opens a session for tokenID at now and returns it with the cookie value that names it.
// Expired sessions are swept first; a table still full refuses.
// expired(created, lastSeen, now) says whether a session has ended; it runs under the table's
// lock.
func (s *sessions) create(tokenID, via string, now time.Time, expired func(created, lastSeen, now time.Time) bool) (*session, string, error) {
	return s.createFor(&session{tokenID: tokenID, via: via}, now, expired)
}

// createFor opens ss (its identity filled in) at now.
func (s *sessions) createFor(ss *session, now time.Time, expired func(created, lastSeen, now time.Time) bool) (*session, string, error) {
	cookie := randomToken()
	ss.key, ss.csrf, ss.created, ss.lastSeen = hashKey(cookie), randomToken(), now, now
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		for k, old := range s.byID {
			if expired(old.created, old.lastSeen, now) {
				delete(s.byID, k)
			}
		}
		if len(s.byID) >= s.max {
			return nil, "", errTooManySessions
		}
	}
	s.byID[ss.key] = ss
	return ss, cookie, nil
}

// get returns the session the cookie value names, or nil.
func (s *sessions) get(cookie string) *session {
	if cookie == "" || len(cookie) > 100 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[hashKey(cookie)]
}

// touch records activity on ss at now.
func (s *sessions) touch(ss *session, now time.Time) {
	s.mu.Lock()
	ss.lastSeen = now
	s.mu.Unlock()
}

// lastSeen reads ss's last activity.
func (s *sessions) seen(ss *session) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ss.lastSeen
}

// remove ends ss; it reports whether ss was still open (so that two concurrent sign-outs audit
// once).
func (s *sessions) remove(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID[ss.key] != ss {
		return false
	}
	delete(s.byID, ss.key)
	return true
}

// setFlash leaves a message for ss's next page.
func (s *sessions) setFlash(ss *session, kind, msg string) {
	s.mu.Lock()
	ss.flash, ss.flashKind = msg, kind
	s.mu.Unlock()
}

// takeFlash returns and clears ss's message.
func (s *sessions) takeFlash(ss *session) (kind, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kind, msg = ss.flashKind, ss.flash
	ss.flash, ss.flashKind = "", ""
	return kind, msg
}

// removeExpired takes every session expired at now out of the table and returns them.
func (s *sessions) removeExpired(now time.Time, expired func(created, lastSeen, now time.Time) bool) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for k, ss := range s.byID {
		if expired(ss.created, ss.lastSeen, now) {
			delete(s.byID, k)
			out = append(out, ss)
		}
	}
	return out
}

// sameToken compares two CSRF tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
