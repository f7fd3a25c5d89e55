// Package desktop is the Hale client a desktop messaging app links (Go apps directly; Electron
// and native apps speak the same protocol, see README.md): it gets a posture token bound to the
// app's own key from the device's agent over the agent's local endpoint, and makes the DPoP
// proofs that present it to the messaging backend, which verifies both offline
// (posture.Verifier.VerifyWithProof). The token has the shape of the phone app's (package
// mobile): cnf.jkt is the key's thumbprint, so a token copied elsewhere without the key is
// worthless.
//
// It never imports the agent or the server: only the local protocol (agent/localproto) and the
// posture package's proofs.
package desktop

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/halemdm/hale/agent/localproto"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/posture"
)

// Token is a posture token bound to the app's key.
type Token struct {
	Token     string
	TokenType string
	ExpiresAt time.Time
	DeviceID  string
	// User and Executable are who the agent saw asking: the token names them.
	User       string
	Executable string
}

// Client gets tokens from the agent and signs proofs with one key. It is safe for concurrent
// use.
type Client struct {
	key  crypto.Signer
	pub  *ecdsa.PublicKey
	addr string
	dial func(ctx context.Context, addr string) (net.Conn, error)
	now  func() time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithAddress sets the agent's socket path or pipe name (default DefaultAddress()).
func WithAddress(addr string) Option { return func(c *Client) { c.addr = addr } }

// WithClock sets the clock proofs are dated by, for tests.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// GenerateKey makes a new EC P-256 key. A real app keeps it where the OS keeps secrets (the
// macOS keychain, Windows CNG with a non-exportable key, the Secret Service) behind
// crypto.Signer; it must not leave the app, since the token is worth exactly what the key is.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// New returns a client signing with key, an EC P-256 crypto.Signer.
func New(key crypto.Signer, opts ...Option) (*Client, error) {
	if key == nil {
		return nil, errors.New("desktop: a key is required")
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("desktop: the key must be EC P-256")
	}
	c := &Client{key: key, pub: pub, addr: DefaultAddress(), dial: dialAgent, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// sign signs a SHA-256 digest, ASN.1 DER, as localproto and posture want it.
func (c *Client) sign(digest []byte) ([]byte, error) {
	return c.key.Sign(rand.Reader, digest, crypto.SHA256)
}

// Token asks the agent for a posture token bound to the client's key: on one connection, a
// nonce, then the token with a proof over it. A refusal is a *localproto.Error whose Code says
// why (app_not_allowed, user_not_allowed, device_denied with the server's Reasons,
// server_unreachable, ...); an agent that is not running is an error from the dial.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	conn, err := c.dial(ctx, c.addr)
	if err != nil {
		return nil, fmt.Errorf("desktop: reaching the Hale agent at %s: %w", c.addr, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	} else {
		_ = conn.SetDeadline(time.Now().Add(localproto.IdleTimeout))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, localproto.MaxLine)
	n, err := exchange(conn, r, localproto.Request{Op: localproto.OpNonce})
	if err != nil {
		return nil, err
	}
	proof, err := localproto.NewProof(c.pub, c.sign, n.Nonce, randid.Hex(16), c.now())
	if err != nil {
		return nil, err
	}
	t, err := exchange(conn, r, localproto.Request{Op: localproto.OpToken, Proof: proof})
	if err != nil {
		return nil, err
	}
	if t.Token == "" {
		return nil, errors.New("desktop: the agent answered no token")
	}
	return &Token{Token: t.Token, TokenType: t.TokenType, ExpiresAt: t.ExpiresAt, DeviceID: t.DeviceID,
		User: t.User, Executable: t.Executable}, nil
}

// exchange sends one request and reads its answer; an answer with an error is that error.
func exchange(conn net.Conn, r *bufio.Reader, req localproto.Request) (*localproto.Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("desktop: writing to the agent: %w", err)
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("desktop: reading the agent's answer: %w", errors.Join(localproto.ErrClosed, err))
	}
	var resp localproto.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("desktop: the agent's answer: %w", err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp, nil
}

// Proof answers the DPoP header value for one request to the backend presenting token:
// "Authorization: DPoP <token>" and "DPoP: <proof>". Make one per request (each has its own
// jti; the backend refuses a replay).
func (c *Client) Proof(method, requestURL, token string) (string, error) {
	return posture.NewProof(c.pub, c.sign, method, requestURL, token, randid.Hex(16), c.now())
}

// Thumbprint is the key's RFC 7638 thumbprint, the cnf.jkt of its tokens.
func (c *Client) Thumbprint() (string, error) { return posture.KeyThumbprint(c.pub) }
