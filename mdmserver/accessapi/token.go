package accessapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// Token answers POST /access/v1/token for an agent over mutual TLS (the route wraps it in the
// agent API's device check, which puts the device in the context): api.PostureToken, a
// short-lived JWT that states the device's verdict, bound to the certificate it connected with.
// A denied device gets 403 with the reasons, never a token.
func (h *Handler) Token(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	now := time.Now()
	// The decision on the compliance clock (the same as now outside tests); the token's times
	// on the wall clock its verifiers judge it by.
	a := h.Index.Lookup(d.ID, h.Now())
	if !a.Allow {
		p := problem.New(http.StatusForbidden, "access-denied", "the device may not open sessions now: "+strings.Join(a.ReasonCodes(), ", "))
		p.Reasons = a.Reasons
		AddRemedy(p, r, a, h.HelpDesk)
		problem.Write(w, r, p)
		return
	}
	exp := TokenExpiry(a, now, h.TokenTTL)
	claims := posture.TokenClaims{
		Issuer: h.Issuer, Subject: d.ID, Audience: posture.TokenAudience,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: exp.Unix(), ID: randid.Hex(16),
		Confirm: posture.Confirm{X5tS256: posture.Thumbprint(r.TLS.PeerCertificates[0])},
		Device:  DeviceClaims(a),
	}
	tok, err := h.Signer.Sign(posture.TokenType, claims)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.PostureToken{
		Token: tok, TokenType: posture.TokenType, ExpiresAt: time.Unix(claims.Expiry, 0).UTC(),
		InGrace: a.InGrace, GraceUntil: a.GraceUntil,
	})
}

// DeviceClaims are the posture facts a token carries: the verdict and the claims HIPAA texting
// rests on. The app API's key-bound tokens carry the same.
func DeviceClaims(a access.Answer) posture.DeviceAt {
	dc := posture.DeviceAt{Compliant: a.Compliant, InGrace: a.InGrace}
	if bg := a.BreakGlass; bg != nil {
		dc.BreakGlass = &posture.BreakGlassAt{ID: bg.ID, ExpiresAt: bg.ExpiresAt.Unix()}
		dc.Reasons = bg.Overrides
		if !a.GraceUntil.IsZero() {
			dc.GraceUntil = a.GraceUntil.Unix()
		}
	}
	if a.InGrace {
		dc.GraceUntil = a.GraceUntil.Unix()
		for _, r := range a.Reasons {
			dc.Reasons = append(dc.Reasons, r.Code)
		}
	}
	if p := a.Posture; p != nil {
		dc.Platform = string(p.Platform)
		if p.OS != nil {
			dc.OSVersion = p.OS.Value.Version
		}
		dc.Encrypted = claimValue(p.DiskEncrypted)
		dc.PasscodeSet = claimValue(p.PasscodePresent)
	}
	return dc
}

// claimValue is a claim's value, or nil when the claim is missing.
func claimValue(c *policies.Claim[bool]) *bool {
	if c == nil {
		return nil
	}
	v := c.Value
	return &v
}

// TokenExpiry is when a token issued at now for answer a expires: after ttl, and never after
// the emergency access use it was issued under.
func TokenExpiry(a access.Answer, now time.Time, ttl time.Duration) time.Time {
	exp := now.Add(ttl)
	if a.BreakGlass != nil && a.BreakGlass.ExpiresAt.Before(exp) {
		exp = a.BreakGlass.ExpiresAt
	}
	return exp
}

// AddRemedy adds to a denial's problem the deadline and what the user reads for each reason,
// in the request's language (Accept-Language).
func AddRemedy(p *problem.Details, r *http.Request, a access.Answer, hd remediation.HelpDesk) {
	if !a.GraceUntil.IsZero() {
		g := a.GraceUntil
		p.GraceUntil = &g
	}
	platform := ""
	if a.Posture != nil {
		platform = string(a.Posture.Platform)
	}
	c := remediation.Default()
	p.Remediation = c.Items(a.ReasonCodes(), remediation.Request{Lang: c.Match(r.Header.Get("Accept-Language")), Platform: platform, HelpDesk: hd})
}
