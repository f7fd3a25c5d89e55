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

// session is one signed-in browser, as read for one request. Only the SHA-256 of its cookie
// value is kept, so a reader of the store (a backup, a heap dump) cannot take sessions over;
// the API token it signed in with is kept by ID only and read again on every request, so
// revoking the token ends the session at once.
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
	// flash is the one-time message for this page (the outcome of the last action), as read.
	flash     string
	flashKind string
}

// persistEvery is how stale the stored last-seen time may be: a request writes it at most this
// often. Every server reads it from the store, and the sweep ends idle sessions by it, so a
// session can end up to this much before its idle timeout, never after.
const persistEvery = 15 * time.Second

// sessions is the session table. Every request reads its session from the backend, by key,
// rather than from a copy in memory: with several servers on one database a sign-in on one
// and a sign-out or automatic logoff on another hold on every server at once, with no cache to
// go stale and no change feed to follow. Console traffic is a few people clicking, and the read
// is one indexed lookup.
type sessions struct {
	b   backend
	max int
	log *slog.Logger
}

func newSessions(max int) *sessions {
	return &sessions{b: newMemBackend(), max: max, log: slog.Default()}
}

// record is ss as the store keeps it.
func record(ss *session) *consolesession.Session {
	who := ss.who
	who.Hash = ""
	return &consolesession.Session{Key: ss.key, TokenID: ss.tokenID, Via: ss.via, Who: who, CSRF: ss.csrf,
		Created: ss.created, LastSeen: ss.lastSeen}
}

// fromRecord is the session a stored record describes.
func fromRecord(r *consolesession.Session) *session {
	ss := &session{key: r.Key, tokenID: r.TokenID, via: r.Via, who: r.Who, csrf: r.CSRF, created: r.Created,
		lastSeen: r.LastSeen, flash: r.Flash, flashKind: r.FlashKind}
	if r.Via == "oidc" {
		who := r.Who
		ss.ident = &who
	}
	return ss
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
// expired(created, lastSeen, now) says whether a session has ended.
func (s *sessions) create(tokenID, via string, now time.Time, expired func(created, lastSeen, now time.Time) bool) (*session, string, error) {
	return s.createFor(&session{tokenID: tokenID, via: via}, now, expired)
}

// createFor opens ss (its identity filled in) at now. A sign-in is acknowledged only once its
// session is stored.
func (s *sessions) createFor(ss *session, now time.Time, expired func(created, lastSeen, now time.Time) bool) (*session, string, error) {
	cookie := randomToken()
	ss.key, ss.csrf, ss.created, ss.lastSeen = hashKey(cookie), randomToken(), now, now
	err := s.b.add(context.Background(), record(ss), s.max, func(created, lastSeen time.Time) bool {
		return expired(created, lastSeen, now)
	})
	if err != nil {
		return nil, "", err
	}
	return ss, cookie, nil
}

// get returns the session the cookie value names, or nil when there is none (never was,
// signed out or ended, on any server). An error means the store could not be read: the
// caller denies.
func (s *sessions) get(ctx context.Context, cookie string) (*session, error) {
	if cookie == "" || len(cookie) > 100 {
		return nil, nil
	}
	r, err := s.b.get(ctx, hashKey(cookie))
	if err != nil || r == nil {
		return nil, err
	}
	return fromRecord(r), nil
}

// touch records activity on ss at now. The store hears of it when its last-seen time is
// persistEvery old; the write keeps the later of the stored time and now, so that two servers
// touching one session never move it back, and it never brings back a session that another
// server ended meanwhile.
func (s *sessions) touch(ctx context.Context, ss *session, now time.Time) {
	stale := now.Sub(ss.lastSeen) >= persistEvery
	if now.After(ss.lastSeen) {
		ss.lastSeen = now
	}
	if !stale {
		return
	}
	err := s.b.update(ctx, ss.key, func(r *consolesession.Session) bool {
		if !now.After(r.LastSeen) {
			return false
		}
		r.LastSeen = now
		return true
	})
	if err != nil {
		s.log.Error("console: storing a session's activity failed", "err", err)
	}
}

// seen reads ss's last activity.
func (s *sessions) seen(ss *session) time.Time { return ss.lastSeen }

// remove ends ss; it reports whether ss was still open (so that two concurrent sign-outs, or
// a sign-out and the sweep, on any servers, audit once).
func (s *sessions) remove(ctx context.Context, ss *session) (bool, error) {
	return s.b.removeIf(ctx, ss.key, nil)
}

// setFlash leaves a message for ss's next page, whichever server serves it.
func (s *sessions) setFlash(ctx context.Context, ss *session, kind, msg string) {
	err := s.b.update(ctx, ss.key, func(r *consolesession.Session) bool {
		r.Flash, r.FlashKind = msg, kind
		return true
	})
	if err != nil {
		s.log.Error("console: storing a session's message failed", "err", err)
	}
}

// takeFlash returns ss's message as read for this request, and clears it in the store.
func (s *sessions) takeFlash(ctx context.Context, ss *session) (kind, msg string) {
	if ss.flash == "" && ss.flashKind == "" {
		return "", ""
	}
	kind, msg = ss.flashKind, ss.flash
	ss.flash, ss.flashKind = "", ""
	err := s.b.update(ctx, ss.key, func(r *consolesession.Session) bool {
		if r.Flash == "" && r.FlashKind == "" {
			return false
		}
		r.Flash, r.FlashKind = "", ""
		return true
	})
	if err != nil {
		s.log.Error("console: clearing a session's message failed", "err", err)
	}
	return kind, msg
}

// removeExpired ends every session expired at now and returns those it ended (those another
// sweep or sign-out ended first are not returned: their end is on the record already).
func (s *sessions) removeExpired(ctx context.Context, now time.Time, expired func(created, lastSeen, now time.Time) bool) ([]*session, error) {
	list, err := s.b.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []*session
	for i := range list {
		r := &list[i]
		if !expired(r.Created, r.LastSeen, now) {
			continue
		}
		ok, err := s.b.removeIf(ctx, r.Key, func(cur *consolesession.Session) bool {
			return expired(cur.Created, cur.LastSeen, now) // activity since the list keeps it
		})
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, fromRecord(r))
		}
	}
	return out, nil
}

// sameToken compares two CSRF tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
