package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/consolesession"
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
	// persistedSeen is the last-seen time the store has.
	persistedSeen time.Time
	// flash is a one-time message for the next page (the outcome of an action), kept here
	// rather than in the redirect's URL.
	flash     string
	flashKind string
}

// SessionStore keeps the sessions durably (the server's store), so that a restart does not
// sign everyone out; without one they live in memory only.
type SessionStore interface {
	Put(ctx context.Context, s *consolesession.Session) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context) ([]consolesession.Session, error)
}

// persistEvery is how stale the stored last-seen time may be: a request touches the store at
// most this often. After a restart a session is idle since its stored time, which is earlier
// than the real one: it can end sooner, never later.
const persistEvery = time.Minute

// sessions is the session table: in memory, and in the store when there is one (read at start;
// one server owns its store, so the table is the truth between restarts).
type sessions struct {
	mu    sync.Mutex
	byID  map[string]*session
	max   int
	store SessionStore // nil: memory only
	log   *slog.Logger
}

func newSessions(max int) *sessions {
	return &sessions{byID: map[string]*session{}, max: max, log: slog.Default()}
}

// record is ss as the store keeps it.
func record(ss *session) *consolesession.Session {
	who := ss.who
	who.Hash = ""
	return &consolesession.Session{Key: ss.key, TokenID: ss.tokenID, Via: ss.via, Who: who, CSRF: ss.csrf,
		Created: ss.created, LastSeen: ss.lastSeen}
}

// load reads the stored sessions into the table, deleting those expired at now.
func (s *sessions) load(ctx context.Context, now time.Time, expired func(created, lastSeen, now time.Time) bool) error {
	if s.store == nil {
		return nil
	}
	list, err := s.store.List(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range list {
		if expired(r.Created, r.LastSeen, now) {
			if err := s.store.Delete(ctx, r.Key); err != nil {
				return err
			}
			continue
		}
		ss := &session{key: r.Key, tokenID: r.TokenID, via: r.Via, who: r.Who, csrf: r.CSRF, created: r.Created,
			lastSeen: r.LastSeen, persistedSeen: r.LastSeen}
		if r.Via == "oidc" {
			who := r.Who
			ss.ident = &who
		}
		s.byID[r.Key] = ss
	}
	return nil
}

// forget deletes key from the store, logging a failure: the session is already out of the
// table, and a copy left in the store still expires by its own times after a restart.
func (s *sessions) forget(key string) {
	if s.store == nil {
		return
	}
	if err := s.store.Delete(context.Background(), key); err != nil {
		s.log.Error("console: deleting an ended session from the store failed; it expires by itself", "err", err)
	}
}

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
	ss.key, ss.csrf, ss.created, ss.lastSeen, ss.persistedSeen = hashKey(cookie), randomToken(), now, now, now
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		for k, old := range s.byID {
			if expired(old.created, old.lastSeen, now) {
				delete(s.byID, k)
				s.forget(k)
			}
		}
		if len(s.byID) >= s.max {
			return nil, "", errTooManySessions
		}
	}
	s.byID[ss.key] = ss
	if s.store != nil {
		// A sign-in is acknowledged only once its session is stored.
		if err := s.store.Put(context.Background(), record(ss)); err != nil {
			delete(s.byID, ss.key)
			return nil, "", err
		}
	}
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

// touch records activity on ss at now; the store hears of it at most every persistEvery.
func (s *sessions) touch(ss *session, now time.Time) {
	s.mu.Lock()
	ss.lastSeen = now
	var rec *consolesession.Session
	if s.store != nil && now.Sub(ss.persistedSeen) >= persistEvery && s.byID[ss.key] == ss {
		ss.persistedSeen = now
		rec = record(ss)
	}
	s.mu.Unlock()
	if rec != nil {
		if err := s.store.Put(context.Background(), rec); err != nil {
			s.log.Error("console: storing a session's activity failed", "err", err)
		}
	}
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
	s.forget(ss.key)
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
			s.forget(k)
			out = append(out, ss)
		}
	}
	return out
}

// sameToken compares two CSRF tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
