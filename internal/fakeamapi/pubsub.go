package fakeamapi

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GoogleIssuer is the issuer of the ID tokens Pub/Sub push puts on its requests.
const GoogleIssuer = "https://accounts.google.com"

// Pusher delivers Pub/Sub push messages the way Google's Pub/Sub does for the Android
// Management API's notifications: a POST of the push envelope with an OIDC ID token in
// Authorization, signed RS256 by a key whose public half JWKS serves.
type Pusher struct {
	key *rsa.PrivateKey
	kid string
	// Email is the push subscription's service account, the token's email claim.
	Email string
	// Subscription names the push subscription in the envelope.
	Subscription string
	// Client sends the pushes (http.DefaultClient when nil).
	Client *http.Client
}

// NewPusher makes a pusher with a fresh RSA key.
func NewPusher() (*Pusher, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &Pusher{key: k, kid: hex.EncodeToString(randBytes(8)), Email: "pubsub-push@hale-test.iam.gserviceaccount.com",
		Subscription: "projects/hale-test/subscriptions/amapi-push"}, nil
}

// JWKS is the public key set, as Google serves https://www.googleapis.com/oauth2/v3/certs.
func (p *Pusher) JWKS() []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
	return b
}

// ServeHTTP serves JWKS, so a test can point the server's key URL at a Pusher.
func (p *Pusher) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(p.JWKS())
}

// Message is one push.
type Message struct {
	// URL is the push endpoint; Audience the token's aud (the endpoint URL by default).
	URL, Audience string
	// NotificationType is the AMAPI notification type attribute (STATUS_REPORT, ENROLLMENT,
	// COMMAND).
	NotificationType string
	// Data is the notification's JSON (a Device for STATUS_REPORT and ENROLLMENT).
	Data []byte
	// ID is the Pub/Sub message ID; a fresh one when empty.
	ID string
	// Token replaces the signed ID token when not empty (for refusal tests).
	Token string
	// Issuer replaces GoogleIssuer; Expiry the token's lifetime (one hour when zero, negative
	// for an expired token).
	Issuer string
	Expiry time.Duration
}

// IDToken signs an ID token for audience as Pub/Sub does.
func (p *Pusher) IDToken(issuer, audience string, lifetime time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", p.kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience}, Subject: "1088" + hex.EncodeToString(randBytes(6)),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(lifetime))}
	extra := map[string]any{"email": p.Email, "email_verified": true, "azp": "1088"}
	return jwt.Signed(signer).Claims(claims).Claims(extra).Serialize()
}

// Push delivers m and returns the endpoint's status code and the message ID used.
func (p *Pusher) Push(m Message) (int, string, error) {
	if m.ID == "" {
		m.ID = fmt.Sprintf("%d", time.Now().UnixNano())
	}
	if m.Audience == "" {
		m.Audience = m.URL
	}
	if m.Issuer == "" {
		m.Issuer = GoogleIssuer
	}
	if m.Expiry == 0 {
		m.Expiry = time.Hour
	}
	tok := m.Token
	if tok == "" {
		var err error
		if tok, err = p.IDToken(m.Issuer, m.Audience, m.Expiry); err != nil {
			return 0, "", err
		}
	}
	env, _ := json.Marshal(map[string]any{
		"message": map[string]any{
			"data":        base64.StdEncoding.EncodeToString(m.Data),
			"attributes":  map[string]string{"notificationType": m.NotificationType},
			"messageId":   m.ID,
			"publishTime": time.Now().UTC().Format(time.RFC3339Nano),
		},
		"subscription": p.Subscription,
	})
	return p.PushRaw(m.URL, tok, env, m.ID)
}

// PushRaw posts body as a push with the ID token tok.
func (p *Pusher) PushRaw(url, tok string, body []byte, id string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, id, nil
}
