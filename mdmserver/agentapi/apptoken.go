package agentapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/accessapi"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/posture"
)

// maxAppTokenBody bounds POST /agent/v1/app-token: a JWK, a user name and a path.
const maxAppTokenBody = 8 << 10

// AppTokens serves POST /agent/v1/app-token: posture tokens for a computer's desktop apps,
// asked by the device's agent over its mutual TLS identity and bound to the app's own key.
// Every field must be set.
type AppTokens struct {
	// Decisions answers the device's access decision, from the decision index.
	Decisions Decisions
	// Signer signs posture tokens.
	Signer accessapi.Signer
	// Issuer is the tokens' iss (the server's public URL); TTL their lifetime.
	Issuer string
	TTL    time.Duration
	// Now is the clock decisions are made on (the compliance clock).
	Now func() time.Time
	// Log gets the internal errors.
	Log *slog.Logger
}

// Decisions answers a device's access decision (an *access.Index).
type Decisions interface {
	Lookup(deviceID string, now time.Time) access.Answer
}

// Issue answers POST /agent/v1/app-token (the route wraps it in RequireDevice, so the device is
// the agent's): api.AgentAppTokenRequest in, api.PostureToken out, a token of the same shape as
// the messaging app's on phones (cnf.jkt, verified with a DPoP proof by
// posture.Verifier.VerifyWithProof) that also names the local user and executable. It is
// issued on the same decision as every token: a device that may not open sessions (wiped,
// locked, lost, non-compliant past grace, no fresh report, unknown) gets 403 with the reasons.
func (t *AppTokens) Issue(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	var req api.AgentAppTokenRequest
	if !problem.DecodeJSON(w, r, maxAppTokenBody, &req) {
		return
	}
	jkt, msg := appKeyThumbprint(req.Key)
	if msg == "" {
		msg = checkLocalApp(req)
	}
	if msg != "" {
		problem.BadRequest(w, r, msg)
		return
	}
	now := t.Now()
	a := t.Decisions.Lookup(d.ID, now)
	if !a.Allow {
		p := problem.New(http.StatusForbidden, "access-denied", "the device may not open sessions now: "+strings.Join(a.ReasonCodes(), ", "))
		p.Reasons = a.Reasons
		problem.Write(w, r, p)
		return
	}
	claims := posture.TokenClaims{
		Issuer: t.Issuer, Subject: d.ID, Audience: posture.TokenAudience,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(t.TTL).Unix(), ID: randid.Hex(16),
		Confirm: posture.Confirm{JKT: jkt}, Device: accessapi.DeviceClaims(a),
		LocalApp: &posture.LocalApp{User: req.User, UID: req.UID, Executable: req.Executable},
	}
	tok, err := t.Signer.Sign(posture.TokenType, claims)
	if err != nil {
		httpapi.Internal(t.Log, w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusOK, api.PostureToken{
		Token: tok, TokenType: posture.TokenType, ExpiresAt: time.Unix(claims.Expiry, 0).UTC(),
		InGrace: a.InGrace, GraceUntil: a.GraceUntil,
	})
}

// appKeyThumbprint is the RFC 7638 thumbprint of a public EC P-256 JWK, or why it is refused.
func appKeyThumbprint(raw []byte) (string, string) {
	if len(raw) == 0 {
		return "", "key is required: the app's public key as an EC P-256 JWK"
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return "", "key is not a JWK"
	}
	pub, ok := k.Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", "key must be a public EC P-256 JWK"
	}
	jkt, err := posture.KeyThumbprint(pub)
	if err != nil {
		return "", "key has no thumbprint"
	}
	return jkt, ""
}

// checkLocalApp refuses a user or executable that is empty, too long or not printable text:
// they go into tokens and logs.
func checkLocalApp(req api.AgentAppTokenRequest) string {
	printable := func(s string) bool {
		return !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == unicode.ReplacementChar })
	}
	switch {
	case req.User == "" || len(req.User) > api.MaxLocalUserLen || !printable(req.User):
		return "user is required: printable, at most 256 bytes"
	case len(req.UID) > api.MaxLocalUserLen || !printable(req.UID):
		return "uid must be printable, at most 256 bytes"
	case req.Executable == "" || len(req.Executable) > api.MaxExecutableLen || !printable(req.Executable) || !absolute(req.Executable):
		return "executable is required: an absolute path, printable, at most 4096 bytes"
	}
	return ""
}

// absolute reports whether p is an absolute path on a Unix or a Windows computer (the server
// may run on either, the agent on any).
func absolute(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') && unicode.IsLetter(rune(p[0]))
}
