package fakeamapi

import (
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// RequireServiceAccount makes the fake demand, on every API request, an OAuth access token it
// issued at TokenURL to a service account it trusts, as Google's OAuth server does for a
// service account key file (an RS256 JWT assertion signed by the account's key, RFC 7523), or
// a JWT the account signed itself for the API (Google's self-signed JWT flow). Without it the
// fake takes unauthenticated requests (option.WithoutAuthentication).
func (s *Server) RequireServiceAccount(email string, key *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accounts == nil {
		s.accounts = map[string]*rsa.PublicKey{}
	}
	s.accounts[email] = key
}

// TokenURL is the fake's OAuth token endpoint, the token_uri of test key files.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// assertionClaims are the claims of a service account's JWT.
type assertionClaims struct {
	jwt.Claims
	Scope string `json:"scope"`
}

// verifyAccount checks a JWT signed by a trusted service account; s.mu is held.
func (s *Server) verifyAccount(raw string, audiences ...string) (*assertionClaims, bool) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, false
	}
	var unverified assertionClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, false
	}
	key := s.accounts[unverified.Issuer]
	if key == nil {
		return nil, false
	}
	var c assertionClaims
	if err := tok.Claims(key, &c); err != nil {
		return nil, false
	}
	for _, aud := range audiences {
		if c.ValidateWithLeeway(jwt.Expected{Issuer: unverified.Issuer, AnyAudience: jwt.Audience{aud}, Time: time.Now()}, time.Minute) == nil {
			return &c, true
		}
	}
	return nil, false
}

// serveToken is the OAuth token endpoint: a JWT bearer grant for a trusted account, for the
// androidmanagement scope, gets an access token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.verifyAccount(r.PostForm.Get("assertion"), s.URL+"/token", "https://oauth2.googleapis.com/token")
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || !ok ||
		!strings.Contains(c.Scope, "https://www.googleapis.com/auth/androidmanagement") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	tok := "ya29.fake-" + hex.EncodeToString(randBytes(16))
	if s.issued == nil {
		s.issued = map[string]bool{}
	}
	s.issued[tok] = true
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

// authorized reports whether an API request may proceed; s.mu is held.
func (s *Server) authorized(r *http.Request) bool {
	if len(s.accounts) == 0 {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	if s.issued[tok] {
		return true
	}
	_, ok = s.verifyAccount(tok, "https://androidmanagement.googleapis.com/", s.URL+"/")
	return ok
}
