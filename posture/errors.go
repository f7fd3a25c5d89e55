package posture

import (
	"errors"
	"fmt"
)

// Errors a Verifier or Receiver returns, wrapped with detail. Match them with errors.Is; ReasonCode
// maps any of them to the reason code a deny should carry.
var (
	// ErrMalformed: the token is not a compact JWS with the expected claims, or is too large.
	ErrMalformed = errors.New("posture: malformed token")
	// ErrUnsupportedAlgorithm: the token is not signed with ES256 ("none" and HMAC included).
	ErrUnsupportedAlgorithm = errors.New("posture: token algorithm is not ES256")
	// ErrWrongType: the "typ" header names another kind of token (a SET shown as a posture token).
	ErrWrongType = errors.New("posture: wrong token type")
	// ErrUnknownKey: no key in the server's key set has the token's "kid", even after a refetch.
	ErrUnknownKey = errors.New("posture: token signed by an unknown key")
	// ErrKeysUnavailable: the key set could not be fetched or parsed; the token was not judged.
	ErrKeysUnavailable = errors.New("posture: signing keys unavailable")
	// ErrBadSignature: the signature does not verify under the named key.
	ErrBadSignature = errors.New("posture: bad token signature")
	// ErrExpired: the token's exp has passed (beyond the leeway).
	ErrExpired = errors.New("posture: token expired")
	// ErrNotYetValid: the token's nbf or iat lies in the future (beyond the leeway).
	ErrNotYetValid = errors.New("posture: token not yet valid")
	// ErrWrongAudience: the token is meant for someone else.
	ErrWrongAudience = errors.New("posture: wrong token audience")
	// ErrWrongIssuer: the token was issued by another server than the one configured.
	ErrWrongIssuer = errors.New("posture: wrong token issuer")
	// ErrWrongBinding: the token is bound to another certificate than the one the peer presented.
	ErrWrongBinding = errors.New("posture: token bound to another certificate")
	// ErrNoPeerCertificate: the connection carried no client certificate, so the token's
	// certificate binding cannot be checked. A bearer posture token is never accepted alone.
	ErrNoPeerCertificate = errors.New("posture: no peer certificate to check the token binding against")
	// ErrRevoked: a revocation event for the device arrived after the token was issued.
	ErrRevoked = errors.New("posture: token revoked")
)

// ReasonCode maps an error from this package to the reason code a deny should carry:
// ReasonTokenRevoked, ReasonUnreachable, ReasonUnknownCert, ReasonInvalidToken, the first reason
// of a *DeniedError, or the code a Client error implies. Other errors map to
// ReasonInternalError.
func ReasonCode(err error) string {
	var ae *APIError
	var de *DeniedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de) && len(de.Reasons) > 0:
		return de.Reasons[0].Code
	case errors.Is(err, ErrRevoked):
		return ReasonTokenRevoked
	case errors.Is(err, ErrKeysUnavailable):
		return ReasonUnreachable
	case errors.Is(err, ErrNoPeerCertificate):
		return ReasonUnknownCert
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupportedAlgorithm), errors.Is(err, ErrWrongType),
		errors.Is(err, ErrUnknownKey), errors.Is(err, ErrBadSignature), errors.Is(err, ErrExpired),
		errors.Is(err, ErrNotYetValid), errors.Is(err, ErrWrongAudience), errors.Is(err, ErrWrongIssuer),
		errors.Is(err, ErrWrongBinding), errors.Is(err, ErrProof), errors.Is(err, ErrNotKeyBound):
		return ReasonInvalidToken
	case errors.As(err, &ae):
		return ae.reason()
	case errors.Is(err, errUnreachable):
		return ReasonUnreachable
	}
	return ReasonInternalError
}

// errUnreachable marks transport failures (connection refused, timeout, TLS) of a Client call.
var errUnreachable = errors.New("posture: access server unreachable")

// APIError is a non-200 answer of the access API, with the RFC 9457 problem it carried if any.
type APIError struct {
	StatusCode int
	// Type, Title and Detail come from the problem document; empty if the body was not one.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

func (e *APIError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		return fmt.Sprintf("posture: access API answered %d", e.StatusCode)
	}
	return fmt.Sprintf("posture: access API answered %d: %s", e.StatusCode, msg)
}

// reason is server_unreachable for answers that mean "try again later" (a proxy or an overloaded
// server), internal_error for the rest (bad credentials, a bug).
func (e *APIError) reason() string {
	switch e.StatusCode {
	case 502, 503, 504:
		return ReasonUnreachable
	}
	return ReasonInternalError
}
