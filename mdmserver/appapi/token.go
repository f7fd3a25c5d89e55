package appapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/accessapi"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// Decisions answers the access decision of a device, from the decision index.
type Decisions interface {
	Lookup(deviceID string, now time.Time) access.Answer
}

// Tokens is what POST /app/v1/token needs besides the service: the decisions, the signer of
// posture tokens and their issuer and lifetime.
type Tokens struct {
	Decisions Decisions
	Signer    accessapi.Signer
	Issuer    string
	TTL       time.Duration
	Now       func() time.Time
	// HelpDesk is whom a denial's remediation tells the user to call.
	HelpDesk remediation.HelpDesk
}

// Token answers POST /app/v1/token: after a fresh signed report (the body is a report, verified
// and recorded as POST /app/v1/report does), a posture token for the instance's device, bound to
// the instance's key by cnf.jkt and naming the instance. The backend verifies it offline with
// a DPoP proof signed by that key (posture.Verifier.VerifyWithProof). A denied device gets 403
// with the reasons, never a token.
func (h *Handler) Token(w http.ResponseWriter, r *http.Request) {
	var req api.AppReportRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	e := httpapi.Entry(r, httpapi.Event{})
	e.Actor, e.Role = "app:"+req.InstanceID, "app"
	in, err := h.Service.Report(r.Context(), req, e)
	if err != nil {
		h.refused(w, r, err)
		return
	}
	jkt, err := in.JKT()
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	now := h.Tokens.Now()
	a := h.Tokens.Decisions.Lookup(in.DeviceID, now)
	if !a.Allow {
		p := problem.New(http.StatusForbidden, "access-denied", "the device may not open sessions now: "+strings.Join(a.ReasonCodes(), ", "))
		p.Reasons = a.Reasons
		accessapi.AddRemedy(p, r, a, h.Tokens.HelpDesk)
		problem.Write(w, r, p)
		return
	}
	claims := posture.TokenClaims{
		Issuer: h.Tokens.Issuer, Subject: in.DeviceID, Audience: posture.TokenAudience,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: accessapi.TokenExpiry(a, now, h.Tokens.TTL).Unix(), ID: randid.Hex(16),
		Confirm: posture.Confirm{JKT: jkt}, Device: accessapi.DeviceClaims(a), AppInstance: in.ID,
	}
	tok, err := h.Tokens.Signer.Sign(posture.TokenType, claims)
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.PostureToken{
		Token: tok, TokenType: posture.TokenType, ExpiresAt: time.Unix(claims.Expiry, 0).UTC(),
		InGrace: a.InGrace, GraceUntil: a.GraceUntil,
	})
}
