package api

import "encoding/json"

// AgentAppTokenRequest is the body of POST /agent/v1/app-token: the agent, over its mutual TLS
// identity, asks for a posture token bound to the key of a desktop app it saw on its local
// endpoint. The agent has checked the app's proof of possession of Key (a signed fresh nonce),
// the local user the app runs as and its executable; the server names them in the token.
type AgentAppTokenRequest struct {
	// Key is the app's public key, an EC P-256 JWK; the token's cnf.jkt is its thumbprint.
	Key json.RawMessage `json:"key"`
	// User is the local account the app runs as (its name; UID when it has none).
	User string `json:"user"`
	// UID is the account's numeric ID (Unix) or SID (Windows).
	UID string `json:"uid,omitempty"`
	// Executable is the absolute path of the app's executable, as the OS reported it.
	Executable string `json:"executable"`
}

// Bounds of AgentAppTokenRequest's fields.
const (
	MaxLocalUserLen  = 256
	MaxExecutableLen = 4096
)
