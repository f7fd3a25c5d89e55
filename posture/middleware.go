package posture

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/remediation"
)

// Headers the middleware reads. A posture token may also come as "Authorization: Posture <jwt>".
const (
	PostureTokenHeader = "X-Posture-Token"
	DeviceIDHeader     = "X-Device-ID"
)

// SessionDeniedType is the problem type URI of the middleware's 403 answers.
const SessionDeniedType = "https://hale.dev/problems/session-denied"

// Gate decides whether the device behind a request may open a session. Its zero value denies
// everything: it has no way to learn anything about a device. Configure it, then use it with
// Middleware, grpcgate's interceptors, or Authorize directly.
//
// A request is judged by the first of these it presents:
//
//  1. a posture token (with Verifier set), checked offline by Verifier against the peer's client
//     certificate, or, for the messaging app's key-bound tokens, against the DPoP proof of
//     possession the request carries; then, if RequireLiveDecision, confirmed by Client;
//  2. a client certificate (with Client set), looked up by the server;
//  3. a device ID (with Client set and TrustDeviceID), looked up by the server.
type Gate struct {
	// Verifier checks posture tokens. Without it, tokens are not looked at.
	Verifier *Verifier
	// Client asks the server for the live decision: for requests without a token, and for token
	// requests when RequireLiveDecision is set.
	Client *Client
	// RequireLiveDecision makes a valid token count only if the server, asked now, also allows the
	// device. A token alone is a statement that was true when it was issued (minutes ago);
	// revocation events close most of that gap, this closes all of it, at the price of a request
	// per session (cached for the Client's TTL).
	RequireLiveDecision bool
	// TrustDeviceID accepts a device ID the client merely claims (the X-Device-ID header or the
	// x-device-id metadata). Anyone can send any device's ID, so set it only when something
	// in front of the backend (a proxy that terminates device mTLS) sets that header itself.
	TrustDeviceID bool
	// Logger, if set, logs every denial with its full cause; the client sees only the reason
	// codes and, for the backend's own trouble (an unreachable server), a generic detail.
	Logger *slog.Logger
	// PublicURL is the scheme and host clients reach the backend at ("https://chat.example.org"),
	// against which DPoP proofs' htu is checked. Empty: the request's own, which is right only
	// when nothing in front of the backend rewrites the host or terminates TLS.
	PublicURL string
	// HelpDesk is whom the remediation of a denial tells the user to call about what they
	// cannot fix themselves (a wiped or lost device). Empty: "your organisation's help desk".
	HelpDesk remediation.HelpDesk
}

// Presented is what a request showed to identify its device.
type Presented struct {
	Token    string            // a posture token
	Peer     *x509.Certificate // the client certificate of the connection
	DeviceID string            // a claimed device ID (used only with Gate.TrustDeviceID)
	// Proof is a DPoP proof (RFC 9449) for a key-bound token, made for a request of Method to
	// URL (scheme, host and path).
	Proof       string
	Method, URL string
	// AcceptLanguage is the request's Accept-Language: the language of the remediation.
	AcceptLanguage string
}

// Access is what the Gate learned about an allowed request's device; FromContext returns it.
type Access struct {
	DeviceID string
	// Decision is the server's live decision if one was asked for (Live), otherwise the one the
	// token's claims imply. Its Reasons are grace warnings a session may want to show.
	Decision Decision
	// Claims are the posture token's claims, nil if the device was checked without a token.
	Claims *TokenClaims
	Live   bool
}

// DeniedError is the Gate's refusal: the device and the reason codes it was denied for.
type DeniedError struct {
	DeviceID string
	Reasons  []Reason
	// Err is the underlying failure (a token error, an unreachable server), if any.
	Err error
	// GraceUntil is when the device's grace ended (or ends), if the server or token said.
	GraceUntil time.Time
	// Remediation is what the device's user reads for each reason (Authorize fills it).
	Remediation []remediation.Item
	// platform is the device's, for the remediation's steps.
	platform string
}

func (e *DeniedError) Error() string {
	codes := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		codes[i] = r.Code
	}
	msg := "posture: session denied (" + strings.Join(codes, ", ") + ")"
	if e.DeviceID != "" {
		msg += " for device " + e.DeviceID
	}
	if d := e.detail(); d != "" {
		msg += ": " + d
	}
	return msg
}

func (e *DeniedError) Unwrap() error { return e.Err }

func (e *DeniedError) detail() string {
	for _, r := range e.Reasons {
		if r.Detail != "" {
			return r.Detail
		}
	}
	return ""
}

// Authorize judges one request (see Gate). It answers the Access for an allowed device, or a
// *DeniedError.
func (g *Gate) Authorize(ctx context.Context, p Presented) (Access, error) {
	a, err := g.authorize(ctx, p)
	var denied *DeniedError
	if errors.As(err, &denied) {
		denied.Remediation = g.remedy(PublicDenial(denied).Reasons, p.AcceptLanguage, denied.platform)
	} else if err == nil {
		a.Decision.Remediation = g.remedy(a.Decision.Reasons, p.AcceptLanguage, platformOf(a.Decision.Posture))
		if a.Claims != nil && a.Decision.Posture == nil {
			a.Decision.Remediation = g.remedy(a.Decision.Reasons, p.AcceptLanguage, a.Claims.Device.Platform)
		}
	}
	if err != nil && g.Logger != nil {
		var de *DeniedError
		if errors.As(err, &de) {
			g.Logger.LogAttrs(ctx, slog.LevelInfo, "posture: session denied", slog.String("device", de.DeviceID),
				slog.Any("reasons", de.Reasons), slog.Any("err", de.Err))
		}
	}
	return a, err
}

func (g *Gate) authorize(ctx context.Context, p Presented) (Access, error) {
	switch {
	case p.Token != "" && g.Verifier != nil:
		return g.byToken(ctx, p)
	case p.Peer != nil && g.Client != nil:
		d, err := g.Client.Check(ctx, CertificateSubject(p.Peer))
		return g.live(d, err)
	case p.DeviceID != "" && g.TrustDeviceID && g.Client != nil:
		d, err := g.Client.Device(ctx, p.DeviceID)
		return g.live(d, err)
	}
	return Access{}, &DeniedError{Reasons: []Reason{{Code: ReasonNoDeviceIdentity,
		Detail: "present a posture token or a device certificate"}}}
}

func (g *Gate) byToken(ctx context.Context, p Presented) (Access, error) {
	var c *TokenClaims
	var err error
	if p.Proof != "" {
		c, err = g.Verifier.VerifyWithProof(ctx, p.Token, p.Proof, p.Method, p.URL)
	} else {
		c, err = g.Verifier.Verify(ctx, p.Token, p.Peer)
	}
	if err != nil {
		return Access{}, &DeniedError{Reasons: []Reason{{Code: ReasonCode(err), Detail: err.Error()}}, Err: err}
	}
	dev := c.Device
	deny := func(code, detail string) (Access, error) {
		de := &DeniedError{DeviceID: c.Subject, Reasons: []Reason{{Code: code, Detail: detail}}, platform: dev.Platform}
		if dev.GraceUntil != 0 {
			de.GraceUntil = time.Unix(dev.GraceUntil, 0)
		}
		return Access{}, de
	}
	switch now := g.Verifier.now(); {
	case dev.BreakGlass != nil && !now.Before(time.Unix(dev.BreakGlass.ExpiresAt, 0)):
		return deny(ReasonInvalidToken, "the emergency access use the token was issued under ended at "+
			time.Unix(dev.BreakGlass.ExpiresAt, 0).UTC().Format(time.RFC3339))
	case dev.BreakGlass != nil:
		// Allowed by an emergency access use until it ends; the token expires no later.
	case !dev.Compliant && !dev.InGrace:
		return deny(ReasonInvalidToken, "the token says the device was not compliant")
	case !dev.Compliant && dev.GraceUntil != 0 && !now.Before(time.Unix(dev.GraceUntil, 0)):
		return deny(ReasonGraceExpired, "the grace period in the token ended at "+
			time.Unix(dev.GraceUntil, 0).UTC().Format(time.RFC3339))
	}
	if g.RequireLiveDecision {
		if g.Client == nil {
			return deny(ReasonInternalError, "RequireLiveDecision is set but the Gate has no Client")
		}
		d, err := g.Client.Device(ctx, c.Subject)
		a, err := g.live(d, err)
		a.Claims = c
		return a, err
	}
	d := Decision{DeviceID: c.Subject, Allow: true, Compliant: dev.Compliant, InGrace: dev.InGrace,
		EvaluatedAt: time.Unix(c.IssuedAt, 0)}
	if dev.GraceUntil != 0 {
		d.GraceUntil = time.Unix(dev.GraceUntil, 0)
	}
	for _, code := range dev.Reasons {
		d.Reasons = append(d.Reasons, Reason{Code: code})
	}
	if bg := dev.BreakGlass; bg != nil {
		d.BreakGlass = &BreakGlass{ID: bg.ID, ExpiresAt: time.Unix(bg.ExpiresAt, 0).UTC(), Overrides: dev.Reasons}
	}
	return Access{DeviceID: c.Subject, Decision: d, Claims: c}, nil
}

func (g *Gate) live(d Decision, err error) (Access, error) {
	if err != nil || !d.Allow {
		reasons := d.Reasons
		if len(reasons) == 0 {
			reasons = []Reason{{Code: ReasonInternalError, Detail: "the server denied without a reason"}}
		}
		return Access{}, &DeniedError{DeviceID: d.DeviceID, Reasons: reasons, Err: err, GraceUntil: d.GraceUntil,
			platform: platformOf(d.Posture)}
	}
	return Access{DeviceID: d.DeviceID, Decision: d, Live: true}, nil
}

type accessKey struct{}

// NewContext returns ctx carrying a.
func NewContext(ctx context.Context, a Access) context.Context {
	return context.WithValue(ctx, accessKey{}, a)
}

// FromContext returns the Access the middleware or interceptor stored for an allowed request.
func FromContext(ctx context.Context) (Access, bool) {
	a, ok := ctx.Value(accessKey{}).(Access)
	return a, ok
}

// Middleware lets a request through to next only if g allows its device, with the Access in the
// request's context. Denied requests get a 403 application/problem+json whose "reasons" carry
// the reason codes.
func Middleware(g *Gate) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := Presented{Token: tokenFromHeader(r.Header), DeviceID: r.Header.Get(DeviceIDHeader),
				Proof: r.Header.Get(DPoPHeader), Method: r.Method, URL: g.requestURL(r),
				AcceptLanguage: r.Header.Get("Accept-Language")}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				p.Peer = r.TLS.PeerCertificates[0]
			}
			a, err := g.Authorize(r.Context(), p)
			if err != nil {
				writeDenied(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), a)))
		})
	}
}

// requestURL is the URL a DPoP proof for r must name: PublicURL's scheme and host, or r's own,
// and r's path.
func (g *Gate) requestURL(r *http.Request) string {
	if g.PublicURL != "" {
		return strings.TrimRight(g.PublicURL, "/") + r.URL.EscapedPath()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// tokenFromHeader finds a posture token: "Authorization: Posture <jwt>", "Authorization: DPoP
// <jwt>" (a key-bound token, RFC 9449 section 7.1) or X-Posture-Token. An Authorization header
// with another scheme belongs to the backend's own authentication.
func tokenFromHeader(h http.Header) string {
	if scheme, tok, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " "); ok &&
		(strings.EqualFold(scheme, "Posture") || strings.EqualFold(scheme, "DPoP")) {
		return strings.TrimSpace(tok)
	}
	return strings.TrimSpace(h.Get(PostureTokenHeader))
}

// deniedProblem is the RFC 9457 body of a 403 from the middleware.
type deniedProblem struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail"`
	Instance string   `json:"instance,omitempty"`
	Code     string   `json:"code"`
	DeviceID string   `json:"device_id,omitempty"`
	Reasons  []Reason `json:"reasons"`
	// GraceUntil and Remediation let the messaging app show the user what to fix, as is.
	GraceUntil  time.Time          `json:"grace_until,omitzero"`
	Remediation []remediation.Item `json:"remediation,omitempty"`
}

func writeDenied(w http.ResponseWriter, r *http.Request, err error) {
	de := PublicDenial(err)
	detail := de.detail()
	if detail == "" {
		detail = fmt.Sprintf("the device may not open a session (%s)", de.Reasons[0].Code)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusForbidden)
	_ = json.NewEncoder(w).Encode(deniedProblem{
		Type: SessionDeniedType, Title: "Session denied", Status: http.StatusForbidden, Detail: detail,
		Instance: r.URL.Path, Code: "session-denied", DeviceID: de.DeviceID, Reasons: de.Reasons,
		GraceUntil: de.GraceUntil, Remediation: de.Remediation,
	})
}

// PublicDenial is err from Gate.Authorize as the client may see it: at least one reason, and no
// internal details (addresses, server errors) in the reasons that describe the backend's own
// trouble. Middleware and grpcgate's interceptors answer with it.
func PublicDenial(err error) *DeniedError {
	var de *DeniedError
	if !errors.As(err, &de) {
		de = &DeniedError{Reasons: []Reason{{Code: ReasonInternalError}}}
	}
	out := &DeniedError{DeviceID: de.DeviceID, Reasons: make([]Reason, 0, len(de.Reasons)+1), GraceUntil: de.GraceUntil,
		Remediation: de.Remediation, platform: de.platform}
	for _, r := range de.Reasons {
		switch r.Code {
		case ReasonUnreachable:
			r.Detail = "the device's posture could not be checked now; try again later"
		case ReasonInternalError:
			r.Detail = "the device's posture could not be checked"
		}
		out.Reasons = append(out.Reasons, r)
	}
	if len(out.Reasons) == 0 {
		out.Reasons = append(out.Reasons, Reason{Code: ReasonInternalError, Detail: "the device's posture could not be checked"})
	}
	return out
}
