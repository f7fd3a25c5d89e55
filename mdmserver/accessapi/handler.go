// Package accessapi holds the HTTP handlers of the access API that decide from the server's
// decision index: POST /access/v1/check, where a messaging backend asks whether a device (named
// by ID, certificate, certificate fingerprint or posture token) may open a session, and POST
// /access/v1/token, where an agent gets a posture token to show such a backend. (GET
// /access/v1/devices/{id}, the hot path, is access.DeviceHandler.) The check's request and
// answer are package posture's wire types, the backend's SDK; the token's answer is
// api.PostureToken.
package accessapi

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// Handler serves the access API's check and token routes. Every field must be set.
type Handler struct {
	// Index is the decision index both routes answer from.
	Index *access.Index
	// CA verifies a subject's certificate as one Hale issued to a device, and tells a revoked
	// one (certs.ErrRevoked).
	CA CertVerifier
	// VerifyExtraCA verifies a subject's certificate chain against the CAs besides Hale's whose
	// client certificates identify devices; it fails when there are none.
	VerifyExtraCA func(chain []*x509.Certificate) error
	// Tokens verifies the posture tokens a backend hands to the check.
	Tokens TokenVerifier
	// Signer signs posture tokens.
	Signer Signer
	// Issuer is the iss of posture tokens: the server's public URL.
	Issuer string
	// TokenTTL is how long a posture token is valid.
	TokenTTL time.Duration
	// Now is the clock decisions are made on (the compliance clock).
	Now func() time.Time
	// Log gets the internal errors.
	Log *slog.Logger
	// HelpDesk is whom remediation tells the user to call (optional).
	HelpDesk remediation.HelpDesk
}

// CertVerifier checks a client certificate chain (a *certs.Authority).
type CertVerifier interface {
	VerifyClientCert(chain []*x509.Certificate) error
}

// TokenVerifier checks a posture token without the certificate it is bound to (a
// *posture.Verifier): the backend that hands it over vouches for the connection.
type TokenVerifier interface {
	VerifyUnbound(ctx context.Context, token string) (*posture.TokenClaims, error)
}

// Signer signs a token's claims as a JWS of type typ (a *signing.Keyset).
type Signer interface {
	Sign(typ string, claims any) (string, error)
}

// internal logs err and answers a generic 500 (httpapi.Internal).
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(h.Log, w, r, err)
}
