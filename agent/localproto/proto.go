// Package localproto is the protocol of mdmagent's local endpoint, shared by the agent (package
// agent/localapi serves it) and the desktop client (package desktop speaks it). It links only
// the standard library, so neither side pulls the other's dependencies.
//
// The transport is a Unix stream socket (Linux, macOS) or a named pipe (Windows). Each message
// is one JSON object on one line ("\n"-terminated), at most MaxLine bytes with its newline; a
// connection carries at most MaxRequests requests and closes after IdleTimeout of silence. A
// request names its operation in "op":
//
//	-> {"op":"nonce"}
//	<- {"nonce":"<43 base64url characters>"}
//	-> {"op":"token","proof":"<ES256 dpop+jwt over the nonce>"}
//	<- {"token":"<posture+jwt>","token_type":"posture+jwt","expires_at":"...","device_id":"...",
//	    "user":"alice","executable":"/usr/bin/chat"}
//
// or, for any refusal, {"error":{"code":"...","detail":"...","reasons":[...]}}. The nonce is
// the connection's own and single-use: a token request consumes it whatever the outcome, so a
// proof is good for exactly one token on exactly the connection that asked for the nonce. The
// proof is a DPoP proof (RFC 9449 section 4.2) made with the key the app will later sign its
// DPoP proofs to the backend with: header {"typ":"dpop+jwt","alg":"ES256","jwk":{EC P-256}},
// claims {"jti","htm":"POST","htu":ProofHTU,"iat","nonce"}. The token the agent answers is
// bound to that key's RFC 7638 thumbprint (cnf.jkt).
package localproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Bounds of the protocol.
const (
	// MaxLine is the longest message, newline included. A proof with its key is about 600
	// bytes, a token answer about 2 KiB.
	MaxLine = 16 << 10
	// MaxRequests is how many requests one connection may carry.
	MaxRequests = 8
	// IdleTimeout closes a connection that sends nothing for this long.
	IdleTimeout = 30 * time.Second
	// NonceLifetime is how long after it was issued a nonce is accepted.
	NonceLifetime = time.Minute
)

// Operations.
const (
	OpNonce = "nonce"
	OpToken = "token"
)

// ProofHTU is the htu of a proof to the local endpoint: not an http URL, so a proof made for
// the agent can never be taken by a backend, nor one made for a backend by the agent.
const ProofHTU = "hale-agent:/v1/token"

// ProofHTM is the htm of a proof to the local endpoint.
const ProofHTM = "POST"

// Error codes of the local endpoint.
const (
	CodeBadRequest        = "bad_request"        // not one JSON object of a known op on one line
	CodeTooLarge          = "too_large"          // a line longer than MaxLine
	CodeTooMany           = "too_many_requests"  // more than MaxRequests on one connection
	CodeBusy              = "busy"               // the agent serves as many connections as it will; retry
	CodeUserNotAllowed    = "user_not_allowed"   // the peer's user is not one the endpoint serves
	CodeAppNotAllowed     = "app_not_allowed"    // the peer's executable is not on the allow list
	CodePeerUnknown       = "peer_unknown"       // the OS did not say who the peer is
	CodeNonceInvalid      = "nonce_invalid"      // no nonce asked on this connection, used, or stale
	CodeProofInvalid      = "proof_invalid"      // the proof is malformed or its signature bad
	CodeDeviceDenied      = "device_denied"      // the server refuses: the device may not open sessions
	CodeServerUnreachable = "server_unreachable" // the agent could not get an answer from the server
	CodeInternal          = "internal_error"
)

// Request is one message from the app.
type Request struct {
	Op    string `json:"op"`
	Proof string `json:"proof,omitempty"`
}

// Response is one message from the agent: the answer of its op, or Error.
type Response struct {
	Nonce      string    `json:"nonce,omitempty"`
	Token      string    `json:"token,omitempty"`
	TokenType  string    `json:"token_type,omitempty"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	DeviceID   string    `json:"device_id,omitempty"`
	User       string    `json:"user,omitempty"`
	Executable string    `json:"executable,omitempty"`
	Error      *Error    `json:"error,omitempty"`
}

// Error is a refusal: a stable code and a detail for people.
type Error struct {
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
	// Reasons are the server's reason codes when it denied the device (device_wiped, ...).
	Reasons []string `json:"reasons,omitempty"`
}

func (e *Error) Error() string {
	if len(e.Reasons) > 0 {
		return fmt.Sprintf("hale agent: %s: %s %v", e.Code, e.Detail, e.Reasons)
	}
	return fmt.Sprintf("hale agent: %s: %s", e.Code, e.Detail)
}

// Errorf makes an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// DecodeRequest decodes one line (without its newline) into a Request: exactly one JSON
// object, no unknown fields, a known op with the fields it needs, within MaxLine.
func DecodeRequest(line []byte) (Request, *Error) {
	var r Request
	if len(line) >= MaxLine {
		return r, Errorf(CodeTooLarge, "a message is at most %d bytes", MaxLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, Errorf(CodeBadRequest, "not a request object: %v", truncErr(err))
	}
	if dec.More() {
		return Request{}, Errorf(CodeBadRequest, "one JSON object per line")
	}
	switch r.Op {
	case OpNonce:
		if r.Proof != "" {
			return Request{}, Errorf(CodeBadRequest, "a nonce request carries nothing")
		}
	case OpToken:
		if r.Proof == "" {
			return Request{}, Errorf(CodeBadRequest, "a token request carries a proof")
		}
	default:
		return Request{}, Errorf(CodeBadRequest, "op must be %q or %q", OpNonce, OpToken)
	}
	return r, nil
}

// truncErr keeps an error's text short: it may quote the input.
func truncErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// ErrClosed is what a client gets when the agent hung up without answering.
var ErrClosed = errors.New("hale agent: the local endpoint closed the connection")
