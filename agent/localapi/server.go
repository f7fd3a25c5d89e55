// Package localapi is mdmagent's local endpoint: the desktop messaging app of the signed-in user
// asks it for a posture token bound to the app's own key, because the device key (the agent's,
// root-only by design) is out of its reach. The endpoint is a Unix socket on Linux and macOS
// and a named pipe on Windows (Listen); the protocol is package localproto's.
//
// Who is asking is the operating system's answer, not the app's claim: the peer's user and
// process come from SO_PEERCRED (Linux), LOCAL_PEERCRED and LOCAL_PEERPID (macOS) or
// GetNamedPipeClientProcessId and the process token (Windows), and its executable from
// /proc/PID/exe (Linux), the kern.procargs2 sysctl (macOS) or QueryFullProcessImageName
// (Windows). The endpoint serves only users signed in at the computer (or named in the
// configuration) and only the executables on its allow list; with an empty allow list it
// serves nobody. The app proves it holds its key by signing the connection's single-use nonce
// (localproto.VerifyProof); the agent then asks the server, over its mutual TLS identity, for
// the token (Issuer). Nothing is cached: every token is the server's decision of the moment, so
// a wiped, locked or non-compliant device gets none, and an unreachable server is a refusal.
//
// Code signatures: on Windows WithRequireSignature adds an Authenticode check (WinVerifyTrust,
// cgo-free); macOS's check is the Security framework's (SecCode), which needs cgo, so there the
// allow list names paths only, as on Linux, and CheckExecutable refuses allow-list entries that a
// user could replace (not owned by root, or writable by group or others).
package localapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/agent/localproto"
)

// Peer is who is at the other end of a connection, as the OS says.
type Peer struct {
	// PID is the peer process's ID (0 when the OS does not say).
	PID int
	// UID is the numeric user ID (Unix) or SID (Windows).
	UID string
	// User is the account name (UID when it has none).
	User string
	// Executable is the absolute path of the peer's executable ("" when unknown).
	Executable string
	// Tampered says why the peer process may run other code than its executable's (started
	// with a preloaded library, as a plain interpreter, under a debugger), or "".
	Tampered string
}

// TokenRequest is what the endpoint asks the Issuer for: a token for Key, naming the peer.
type TokenRequest struct {
	Key  localproto.JWK
	Peer Peer
}

// Token is the Issuer's answer.
type Token struct {
	Token     string
	TokenType string
	ExpiresAt time.Time
	DeviceID  string
}

// Issuer gets a token from the server (the agent, over its mutual TLS identity). An error that
// is a *localproto.Error (device_denied with the server's reasons) reaches the app as it is;
// any other is reported as server_unreachable.
type Issuer interface {
	IssueAppToken(ctx context.Context, req TokenRequest) (Token, error)
}

// Server serves the local endpoint on any number of listeners. It is safe for concurrent use.
type Server struct {
	issuer   Issuer
	exes     map[string]bool
	users    map[string]bool
	signedIn func(Peer) bool
	peerOf   func(net.Conn) (Peer, error)
	now      func() time.Time
	log      *slog.Logger
	timeout  time.Duration
	sem      chan struct{}
	// signed: the executable must also carry a valid code signature (Windows only).
	signed bool
}

// Option configures a Server.
type Option func(*Server)

// WithAllowedExecutables lists the executables (absolute paths, symlinks resolved) that may
// get tokens. None: the endpoint refuses every app.
func WithAllowedExecutables(paths ...string) Option {
	return func(s *Server) {
		for _, p := range paths {
			s.exes[normPath(p)] = true
		}
	}
}

// WithAllowedUsers names accounts (names or numeric IDs / SIDs) that may get tokens besides
// the users signed in at the computer.
func WithAllowedUsers(users ...string) Option {
	return func(s *Server) {
		for _, u := range users {
			s.users[u] = true
		}
	}
}

// WithRequireSignature makes the endpoint also require a valid code signature of the peer's
// executable: Authenticode on Windows (WinVerifyTrust), checked on every connection. Other
// systems offer no check without cgo, so New refuses the option there rather than pretend.
func WithRequireSignature() Option { return func(s *Server) { s.signed = true } }

// WithSignedInCheck replaces the check that a peer's user is signed in at the computer
// (default: SignedIn for this OS). Nil serves only WithAllowedUsers.
func WithSignedInCheck(f func(Peer) bool) Option { return func(s *Server) { s.signedIn = f } }

// WithPeerResolver replaces how a connection's peer is found (default: the OS's answer; tests
// of platforms other than this one).
func WithPeerResolver(f func(net.Conn) (Peer, error)) Option { return func(s *Server) { s.peerOf = f } }

// WithClock sets the clock proofs are checked on.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithIssueTimeout bounds one call to the Issuer (default 15 s): past it the app is told the
// server is unreachable.
func WithIssueTimeout(d time.Duration) Option { return func(s *Server) { s.timeout = d } }

// WithMaxConnections bounds the connections served at once (default 32); more are answered
// busy and closed, so a local flood costs the agent little and holds no peer unread.
func WithMaxConnections(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.sem = make(chan struct{}, n)
		}
	}
}

// New returns a Server that gets tokens from issuer.
func New(issuer Issuer, opts ...Option) (*Server, error) {
	if issuer == nil {
		return nil, errors.New("localapi: an issuer is required")
	}
	s := &Server{
		issuer: issuer, exes: map[string]bool{}, users: map[string]bool{}, signedIn: SignedIn,
		peerOf: PeerOf, now: time.Now, log: slog.New(slog.DiscardHandler), timeout: 15 * time.Second,
		sem: make(chan struct{}, 32),
	}
	for _, o := range opts {
		o(s)
	}
	if s.signed && !signatureSupported {
		return nil, errors.New("localapi: code signatures cannot be checked on this OS without cgo; name executables by path")
	}
	return s, nil
}

// Serve accepts connections on ln until ctx ends or ln fails; it closes ln and waits for the
// connections it serves.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		select {
		case s.sem <- struct{}{}:
		default:
			// At capacity: refused at once rather than left in the backlog, where its peer's
			// credentials would wait unread while the process that connected could go away.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_ = json.NewEncoder(c).Encode(localproto.Response{Error: localproto.Errorf(localproto.CodeBusy, "the agent is serving %d connections; try again", cap(s.sem))})
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-s.sem }()
			s.serveConn(ctx, c)
		})
	}
}

// serveConn answers one connection's requests, at most MaxRequests, each within IdleTimeout.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	peer, perr := s.peerOf(c)
	enc := json.NewEncoder(c)
	r := bufio.NewReaderSize(c, localproto.MaxLine)
	nonce, issued := "", time.Time{}
	for n := 0; ; n++ {
		_ = c.SetDeadline(time.Now().Add(localproto.IdleTimeout))
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			_ = enc.Encode(localproto.Response{Error: localproto.Errorf(localproto.CodeTooLarge, "a message is at most %d bytes", localproto.MaxLine)})
			return
		}
		if err != nil {
			return // closed, idle or broken: nothing to answer
		}
		if n >= localproto.MaxRequests {
			_ = enc.Encode(localproto.Response{Error: localproto.Errorf(localproto.CodeTooMany, "at most %d requests per connection", localproto.MaxRequests)})
			return
		}
		req, perr2 := localproto.DecodeRequest(line[:len(line)-1])
		var resp localproto.Response
		switch {
		case perr2 != nil:
			resp.Error = perr2
		case perr != nil:
			resp.Error = localproto.Errorf(localproto.CodePeerUnknown, "the agent could not tell who is connecting: %v", perr)
		default:
			if e := s.admit(peer); e != nil {
				resp.Error = e
				s.log.Warn("local endpoint refused a peer", "code", e.Code, "uid", peer.UID, "pid", peer.PID, "exe", peer.Executable)
				break
			}
			switch req.Op {
			case localproto.OpNonce:
				nonce, issued = newNonce(), s.now()
				resp.Nonce = nonce
			case localproto.OpToken:
				want := nonce
				if s.now().Sub(issued) > localproto.NonceLifetime {
					want = ""
				}
				nonce = "" // single use, whatever happens next
				resp = s.token(ctx, peer, req.Proof, want)
			}
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
		if resp.Error != nil && (resp.Error.Code == localproto.CodeBadRequest || resp.Error.Code == localproto.CodePeerUnknown) {
			return
		}
	}
}

// admit refuses a peer whose user or executable the endpoint does not serve.
func (s *Server) admit(p Peer) *localproto.Error {
	if !s.users[p.User] && !s.users[p.UID] && (s.signedIn == nil || !s.signedIn(p)) {
		return localproto.Errorf(localproto.CodeUserNotAllowed, "user %s is not signed in at this computer", p.User)
	}
	if p.Executable == "" || !s.exes[normPath(p.Executable)] {
		return localproto.Errorf(localproto.CodeAppNotAllowed, "%s is not an app this agent serves", p.Executable)
	}
	if p.Tampered != "" {
		return localproto.Errorf(localproto.CodeAppNotAllowed, "%s may run other code than its own: %s", p.Executable, p.Tampered)
	}
	if s.signed {
		if err := verifySignature(p.Executable); err != nil {
			return localproto.Errorf(localproto.CodeAppNotAllowed, "%s: %v", p.Executable, err)
		}
	}
	return nil
}

// token checks the proof over the connection's nonce and asks the issuer.
func (s *Server) token(ctx context.Context, peer Peer, proof, nonce string) localproto.Response {
	key, e := localproto.VerifyProof(proof, nonce, s.now(), localproto.NonceLifetime)
	if e != nil {
		return localproto.Response{Error: e}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	t, err := s.issuer.IssueAppToken(ctx, TokenRequest{Key: key, Peer: peer})
	if err != nil {
		var le *localproto.Error
		if errors.As(err, &le) {
			return localproto.Response{Error: le}
		}
		s.log.Warn("local endpoint: no token from the server", "err", err)
		return localproto.Response{Error: localproto.Errorf(localproto.CodeServerUnreachable,
			"the agent could not get a decision from the Hale server, so it gives no token: %v", err)}
	}
	s.log.Info("local endpoint issued an app token", "user", peer.User, "exe", peer.Executable, "pid", peer.PID, "expires_at", t.ExpiresAt)
	return localproto.Response{Token: t.Token, TokenType: t.TokenType, ExpiresAt: t.ExpiresAt, DeviceID: t.DeviceID,
		User: peer.User, Executable: peer.Executable}
}

// normPath is a path as the allow list compares it: as is, except on Windows, whose file
// system is case-insensitive.
func normPath(p string) string {
	if runtime.GOOS == "windows" {
		return strings.ToLower(filepath.Clean(p))
	}
	return p
}

// newNonce is 32 random bytes, base64url.
func newNonce() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
