package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/clustertest"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/consolesession"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Two servers on one database: two Consoles over one store, with one clock and one audit log.

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type cluster struct {
	a, b  *Console
	db    SessionDB
	log   *audit.Log
	clock *testClock
}

// eachBackend runs test with two servers on one database, on every backend (clustertest).
func eachBackend(t *testing.T, test func(t *testing.T, cl *cluster)) {
	clustertest.Each(t, func(t *testing.T, a, b storage.Store) { test(t, newCluster(t, a, b)) })
}

func newCluster(t *testing.T, stA, stB storage.Store) *cluster {
	t.Helper()
	skey, _, err := audit.GenerateKey("hale-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	// One audit log for both: the tests count what the two servers record.
	log, err := audit.New(storage.Scope(stA, func(tx storage.Tx) audit.Tx { return tx }), signer)
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{log: log, clock: &testClock{now: t0}, db: storage.Scope(stA, func(tx storage.Tx) SessionTx { return tx })}
	dbs := []SessionDB{cl.db, storage.Scope(stB, func(tx storage.Tx) SessionTx { return tx })}
	tok := &tokens.Token{ID: "0123456789abcdef", Name: "desk", Role: tokens.RoleIT, Person: "dana", CreatedAt: t0}
	quiet := slog.New(slog.DiscardHandler)
	for i, c := range []**Console{&cl.a, &cl.b} {
		*c, err = New(Deps{Tokens: memTokens{tok}, Auditor: httpapi.Auditor{Log: log, Logger: quiet},
			Roles: func(string) ([]tokens.Role, bool) { return []tokens.Role{tokens.RoleIT}, true }},
			WithLogger(quiet), WithClock(cl.clock.Now), WithSessionDB(dbs[i]), WithIdleTimeout(15*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

// signin signs in through c's sign-in form and returns the session cookie.
func signin(t *testing.T, c *Console) *http.Cookie {
	t.Helper()
	form := url.Values{"token": {"hale_secret"}, "csrf": {"form-token"}}
	r := httptest.NewRequest("POST", "/console/signin", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: signinCookie, Value: "form-token"})
	w := httptest.NewRecorder()
	c.signin(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == CookieName && ck.Value != "" {
			return ck
		}
	}
	t.Fatalf("sign-in answered %d without a session cookie: %s", w.Code, w.Body)
	return nil
}

// request is a GET of the fleet page carrying the session cookie.
func request(ck *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/console/", nil)
	r.AddCookie(ck)
	return r
}

// open reports whether c takes the session of ck, and why not.
func open(c *Console, ck *http.Cookie) (*session, string) {
	ss, _, why := c.current(request(ck))
	return ss, why
}

// stored reads a session from the store.
func (cl *cluster) stored(t *testing.T, ss *session) *consolesession.Session {
	t.Helper()
	r, err := dbBackend{cl.db}.get(context.Background(), ss.key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// entries counts audit entries of action.
func (cl *cluster) entries(t *testing.T, action string) int {
	t.Helper()
	es, _, err := cl.log.List(context.Background(), audit.Filter{Action: action}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestSessionSignedInOnOneServerIsOpenOnTheOther(t *testing.T) {
	eachBackend(t, func(t *testing.T, cl *cluster) {
		ck := signin(t, cl.a)
		if ss, why := open(cl.b, ck); ss == nil {
			t.Fatalf("B does not know A's session: %s", why)
		}

		// Signed out on B: closed on A at once, and audited once.
		ss, _ := open(cl.b, ck)
		form := url.Values{"csrf": {ss.csrf}}
		r := httptest.NewRequest("POST", "/console/signout", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(ck)
		w := httptest.NewRecorder()
		cl.b.signout(w, r)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("sign-out: %d %s", w.Code, w.Body)
		}
		if ss, _ := open(cl.a, ck); ss != nil {
			t.Fatal("A still takes a session signed out on B")
		}
		if ss, _ := open(cl.b, ck); ss != nil {
			t.Fatal("B still takes its signed-out session")
		}
		if n := cl.entries(t, "console.signout"); n != 1 {
			t.Fatalf("%d sign-out entries, want 1", n)
		}
		// A's stale copy ending it again records nothing more.
		if err := cl.a.end(request(ck), ss, nil, "console.signout", "signed_out"); err != nil {
			t.Fatal(err)
		}
		if n := cl.entries(t, "console.signout"); n != 1 {
			t.Fatalf("%d sign-out entries after a second end, want 1", n)
		}
	})
}

func TestSweepOnOneServerLogsOffEverywhere(t *testing.T) {
	eachBackend(t, func(t *testing.T, cl *cluster) {
		busy, idle := signin(t, cl.a), signin(t, cl.a)
		// busy is used on A now and then; idle never again.
		for range 4 {
			cl.clock.Add(5 * time.Minute)
			if ss, why := open(cl.a, busy); ss == nil {
				t.Fatalf("busy session closed at %s: %s", cl.clock.Now().Sub(t0), why)
			}
		}
		// 20 minutes after sign-in: B, which runs the sweep, ends idle (15 minutes unused) and keeps
		// busy, whose use on A it reads from the store.
		cl.b.Sweep(context.Background())
		if ss, _ := open(cl.a, idle); ss != nil {
			t.Fatal("A still takes a session B's sweep ended")
		}
		if ss, why := open(cl.b, busy); ss == nil {
			t.Fatalf("B's sweep ended a session in use on A: %s", why)
		}
		if n := cl.entries(t, "console.session_expired"); n != 1 {
			t.Fatalf("%d expiry entries, want 1", n)
		}
		cl.a.Sweep(context.Background()) // another sweep finds nothing more to record
		if n := cl.entries(t, "console.session_expired"); n != 1 {
			t.Fatalf("%d expiry entries after a second sweep, want 1", n)
		}
	})
}

func TestLastSeenNeverMovesBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, cl *cluster) {
		ck := signin(t, cl.a)
		onB, _ := open(cl.b, ck) // B's view of the session, read now (t0)

		cl.clock.Add(40 * time.Second)
		if ss, _ := open(cl.a, ck); ss == nil {
			t.Fatal("session closed")
		}
		if got := cl.stored(t, onB).LastSeen; !got.Equal(t0.Add(40 * time.Second)) {
			t.Fatalf("stored last seen %s after A's use", got)
		}
		// B finishes a request it began earlier: its touch is older than A's, and must not win.
		cl.b.sessions.touch(context.Background(), onB, t0.Add(20*time.Second))
		if got := cl.stored(t, onB).LastSeen; !got.Equal(t0.Add(40 * time.Second)) {
			t.Fatalf("stored last seen moved back to %s", got)
		}

		// Signed out on A meanwhile: B's late touch does not bring it back.
		if _, err := cl.a.sessions.remove(context.Background(), onB); err != nil {
			t.Fatal(err)
		}
		cl.b.sessions.touch(context.Background(), onB, t0.Add(time.Hour))
		if r := cl.stored(t, onB); r != nil {
			t.Fatalf("a late touch restored an ended session: %+v", r)
		}
	})
}

func TestFlashReachesTheNextPageOnAnotherServer(t *testing.T) {
	eachBackend(t, func(t *testing.T, cl *cluster) {
		ck := signin(t, cl.a)
		ss, _ := open(cl.a, ck)
		cl.a.sessions.setFlash(context.Background(), ss, "ok", "Lock queued")
		onB, _ := open(cl.b, ck)
		if kind, msg := cl.b.sessions.takeFlash(context.Background(), onB); kind != "ok" || msg != "Lock queued" {
			t.Fatalf("B's page got flash %q %q", kind, msg)
		}
		again, _ := open(cl.a, ck)
		if kind, msg := cl.a.sessions.takeFlash(context.Background(), again); kind != "" || msg != "" {
			t.Fatalf("the flash showed twice: %q %q", kind, msg)
		}
	})
}

// failingDB is a store that cannot be read.
type failingDB struct{ SessionDB }

func (failingDB) View(context.Context, func(SessionTx) error) error {
	return errors.New("database unreachable")
}

func TestUnreadableSessionStoreDenies(t *testing.T) {
	eachBackend(t, func(t *testing.T, cl *cluster) {
		ck := signin(t, cl.a)
		cl.b.sessions.b = dbBackend{failingDB{cl.db}}
		ss, why := open(cl.b, ck)
		if ss != nil || !strings.Contains(why, "could not check") {
			t.Fatalf("a session read from an unreadable store: %v, %q", ss, why)
		}
	})
}
