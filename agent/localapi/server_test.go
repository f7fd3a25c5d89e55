//go:build linux || darwin

package localapi

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/localproto"
)

// fakeIssuer stands for the agent's call to the server: it records what it was asked and
// answers a token, or err.
type fakeIssuer struct {
	mu   sync.Mutex
	reqs []TokenRequest
	err  error
}

func (f *fakeIssuer) IssueAppToken(_ context.Context, req TokenRequest) (Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.err != nil {
		return Token{}, f.err
	}
	return Token{Token: "h.c.s", TokenType: "posture+jwt", ExpiresAt: time.Now().Add(5 * time.Minute), DeviceID: "d_1"}, nil
}

func (f *fakeIssuer) calls() []TokenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]TokenRequest(nil), f.reqs...)
}

// selfExe is this test binary, as the OS reports a peer's executable.
func selfExe(t testing.TB) string {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// serve runs a Server with opts on a fresh socket and answers its path.
func serve(t testing.TB, iss Issuer, opts ...Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(iss, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// conn is a raw protocol client.
type conn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, path string) *conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *conn) send(line string) localproto.Response {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

func (c *conn) read() localproto.Response {
	c.t.Helper()
	b, err := c.r.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("reading the answer: %v", err)
	}
	var r localproto.Response
	if err := json.Unmarshal(b, &r); err != nil {
		c.t.Fatalf("answer %q: %v", b, err)
	}
	return r
}

func (c *conn) nonce() string {
	c.t.Helper()
	r := c.send(`{"op":"nonce"}`)
	if r.Error != nil || r.Nonce == "" {
		c.t.Fatalf("nonce: %+v", r.Error)
	}
	return r.Nonce
}

func proofFor(t testing.TB, k *ecdsa.PrivateKey, nonce string) string {
	t.Helper()
	p, err := localproto.NewProof(&k.PublicKey, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) },
		nonce, strconv.FormatInt(time.Now().UnixNano(), 36), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tokenLine(proof string) string {
	b, _ := json.Marshal(localproto.Request{Op: localproto.OpToken, Proof: proof})
	return string(b)
}

func wantCode(t testing.TB, r localproto.Response, code string) {
	t.Helper()
	if r.Error == nil || r.Error.Code != code {
		t.Fatalf("answer %+v (error %+v), want code %s", r, r.Error, code)
	}
	if r.Token != "" {
		t.Fatal("a refusal carried a token")
	}
}

// The allowed app of an allowed user gets a token for the key it proved, and the agent names
// the user and executable the kernel reported, not anything the app said.
func TestTokenForAllowedApp(t *testing.T) {
	iss := &fakeIssuer{}
	uid := strconv.Itoa(os.Getuid())
	path := serve(t, iss, WithAllowedExecutables(selfExe(t)), WithAllowedUsers(uid), WithSignedInCheck(nil))
	k, _ := ecdsa.GenerateKey(ecdsaCurve, rand.Reader)
	c := dial(t, path)
	r := c.send(tokenLine(proofFor(t, k, c.nonce())))
	if r.Error != nil || r.Token != "h.c.s" || r.DeviceID != "d_1" {
		t.Fatalf("answer %+v %+v", r, r.Error)
	}
	calls := iss.calls()
	if len(calls) != 1 {
		t.Fatalf("%d issuer calls", len(calls))
	}
	want, _ := localproto.PublicJWK(&k.PublicKey)
	got := calls[0]
	if got.Key != want || got.Peer.UID != uid || got.Peer.PID != os.Getpid() || got.Peer.Executable != selfExe(t) {
		t.Fatalf("issuer asked %+v, want key %+v uid %s pid %d exe %s", got, want, uid, os.Getpid(), selfExe(t))
	}
	if r.User != got.Peer.User || r.Executable != selfExe(t) {
		t.Fatalf("answer names %s %s", r.User, r.Executable)
	}
}

func TestRefusals(t *testing.T) {
	uid := strconv.Itoa(os.Getuid())
	k, _ := ecdsa.GenerateKey(ecdsaCurve, rand.Reader)
	other, _ := ecdsa.GenerateKey(ecdsaCurve, rand.Reader)

	t.Run("executable not on the allow list", func(t *testing.T) {
		iss := &fakeIssuer{}
		c := dial(t, serve(t, iss, WithAllowedExecutables("/usr/bin/true"), WithAllowedUsers(uid), WithSignedInCheck(nil)))
		wantCode(t, c.send(`{"op":"nonce"}`), localproto.CodeAppNotAllowed)
		wantCode(t, c.send(tokenLine(proofFor(t, k, "x"))), localproto.CodeAppNotAllowed)
		if len(iss.calls()) != 0 {
			t.Fatal("the server was asked")
		}
	})
	t.Run("empty allow list serves nobody", func(t *testing.T) {
		c := dial(t, serve(t, &fakeIssuer{}, WithAllowedUsers(uid), WithSignedInCheck(nil)))
		wantCode(t, c.send(`{"op":"nonce"}`), localproto.CodeAppNotAllowed)
	})
	t.Run("user not signed in", func(t *testing.T) {
		c := dial(t, serve(t, &fakeIssuer{}, WithAllowedExecutables(selfExe(t)), WithSignedInCheck(func(Peer) bool { return false })))
		wantCode(t, c.send(`{"op":"nonce"}`), localproto.CodeUserNotAllowed)
	})

	iss := &fakeIssuer{}
	path := serve(t, iss, WithAllowedExecutables(selfExe(t)), WithAllowedUsers(uid), WithSignedInCheck(nil))
	t.Run("proof signed by another key", func(t *testing.T) {
		c := dial(t, path)
		n := c.nonce()
		good := proofFor(t, k, n)
		forged := proofFor(t, other, n)
		// k's header and claims with other's signature.
		bad := good[:strings.LastIndex(good, ".")] + forged[strings.LastIndex(forged, "."):]
		wantCode(t, c.send(tokenLine(bad)), localproto.CodeProofInvalid)
	})
	t.Run("replayed proof on another connection", func(t *testing.T) {
		c1 := dial(t, path)
		p := proofFor(t, k, c1.nonce())
		if r := c1.send(tokenLine(p)); r.Error != nil {
			t.Fatal(r.Error)
		}
		c2 := dial(t, path)
		c2.nonce()
		wantCode(t, c2.send(tokenLine(p)), localproto.CodeNonceInvalid)
	})
	t.Run("replayed proof on the same connection", func(t *testing.T) {
		c := dial(t, path)
		p := proofFor(t, k, c.nonce())
		if r := c.send(tokenLine(p)); r.Error != nil {
			t.Fatal(r.Error)
		}
		wantCode(t, c.send(tokenLine(p)), localproto.CodeNonceInvalid)
	})
	t.Run("a failed attempt spends the nonce", func(t *testing.T) {
		c := dial(t, path)
		n := c.nonce()
		wantCode(t, c.send(tokenLine(proofFor(t, k, "guess"))), localproto.CodeNonceInvalid)
		wantCode(t, c.send(tokenLine(proofFor(t, k, n))), localproto.CodeNonceInvalid)
	})
	t.Run("token without a nonce", func(t *testing.T) {
		c := dial(t, path)
		wantCode(t, c.send(tokenLine(proofFor(t, k, ""))), localproto.CodeNonceInvalid)
	})
	t.Run("bad request closes the connection", func(t *testing.T) {
		c := dial(t, path)
		wantCode(t, c.send(`{"op":"nonce","user":"root"}`), localproto.CodeBadRequest)
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatal("the connection stayed open")
		}
	})
	t.Run("line too long", func(t *testing.T) {
		c := dial(t, path)
		go c.c.Write([]byte(strings.Repeat("x", localproto.MaxLine+10)))
		wantCode(t, c.read(), localproto.CodeTooLarge)
	})
	t.Run("too many requests", func(t *testing.T) {
		c := dial(t, path)
		for range localproto.MaxRequests {
			c.nonce()
		}
		wantCode(t, c.send(`{"op":"nonce"}`), localproto.CodeTooMany)
	})
	t.Run("server unreachable", func(t *testing.T) {
		down := &fakeIssuer{err: errors.New("dial tcp 127.0.0.1:1: connection refused")}
		c := dial(t, serve(t, down, WithAllowedExecutables(selfExe(t)), WithAllowedUsers(uid), WithSignedInCheck(nil)))
		r := c.send(tokenLine(proofFor(t, k, c.nonce())))
		wantCode(t, r, localproto.CodeServerUnreachable)
		if !strings.Contains(r.Error.Detail, "connection refused") {
			t.Fatalf("detail %q does not say why", r.Error.Detail)
		}
	})
	t.Run("device denied", func(t *testing.T) {
		denied := &fakeIssuer{err: &localproto.Error{Code: localproto.CodeDeviceDenied, Reasons: []string{"device_wiped"}}}
		c := dial(t, serve(t, denied, WithAllowedExecutables(selfExe(t)), WithAllowedUsers(uid), WithSignedInCheck(nil)))
		r := c.send(tokenLine(proofFor(t, k, c.nonce())))
		wantCode(t, r, localproto.CodeDeviceDenied)
		if len(r.Error.Reasons) != 1 || r.Error.Reasons[0] != "device_wiped" {
			t.Fatalf("reasons %v", r.Error.Reasons)
		}
	})
	t.Run("peer unknown", func(t *testing.T) {
		c := dial(t, serve(t, &fakeIssuer{}, WithPeerResolver(func(net.Conn) (Peer, error) { return Peer{}, errors.New("no creds") })))
		wantCode(t, c.send(`{"op":"nonce"}`), localproto.CodePeerUnknown)
	})
}

var ecdsaCurve = elliptic.P256()

// Where the OS has no cgo-free signature check, requiring one is refused, not ignored.
func TestRequireSignatureRefusedWithoutOSSupport(t *testing.T) {
	if _, err := New(&fakeIssuer{}, WithRequireSignature()); err == nil {
		t.Fatal("a signature requirement was accepted on an OS that cannot check it")
	}
}

// Past the connection limit a connection is answered busy and closed at once, not queued.
func TestBusy(t *testing.T) {
	uid := strconv.Itoa(os.Getuid())
	path := serve(t, &fakeIssuer{}, WithAllowedExecutables(selfExe(t)), WithAllowedUsers(uid), WithSignedInCheck(nil), WithMaxConnections(1))
	first := dial(t, path)
	first.nonce() // served, and held open
	wantCode(t, dial(t, path).read(), localproto.CodeBusy)
	first.c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		cc := &conn{t: t, c: c, r: bufio.NewReader(c)}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := cc.send(`{"op":"nonce"}`)
		c.Close()
		if r.Error == nil {
			break
		}
		if r.Error.Code != localproto.CodeBusy || time.Now().After(deadline) {
			t.Fatalf("after the first closed: %+v", r.Error)
		}
	}
}
