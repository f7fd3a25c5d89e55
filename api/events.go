package api

import "time"

// The SSF API (OpenID Shared Signals Framework 1.0): the transmitter's configuration and the
// management of revocation event streams under /ssf/v1. The SETs themselves, the poll request
// and its answer (RFC 8936) are package posture's SETClaims, CAEPEvent, PollRequest and
// PollResponse: a messaging backend reads them with posture, not with this package.

// Delivery methods of an event stream.
const (
	// DeliveryPush is RFC 8935: Hale POSTs each SET to the receiver's endpoint.
	DeliveryPush = "urn:ietf:rfc:8935"
	// DeliveryPoll is RFC 8936: the receiver polls Hale's endpoint for its SETs.
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// SSFConfiguration is GET /.well-known/ssf-configuration: the transmitter's metadata (SSF 1.0
// section 7.1). A receiver takes its issuer and keys from it.
type SSFConfiguration struct {
	// SpecVersion is 1_0.
	SpecVersion string `json:"spec_version"`
	// Issuer is the iss of every SET the server signs.
	Issuer string `json:"issuer"`
	// JWKSURI is where the keys that sign the SETs are published.
	JWKSURI                  string   `json:"jwks_uri"`
	DeliveryMethodsSupported []string `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string   `json:"configuration_endpoint"`
	StatusEndpoint           string   `json:"status_endpoint"`
	AddSubjectEndpoint       string   `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string   `json:"remove_subject_endpoint"`
	VerificationEndpoint     string   `json:"verification_endpoint"`
	// AuthorizationSchemes are how a receiver authenticates: bearer tokens (RFC 6750).
	AuthorizationSchemes []SSFAuthorizationScheme `json:"authorization_schemes"`
	// DefaultSubjects is ALL: a new stream carries every device's events.
	DefaultSubjects string `json:"default_subjects"`
}

// SSFAuthorizationScheme names one way a receiver may authenticate, by the URN of its
// specification.
type SSFAuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// EventDelivery is how a stream's SETs reach the receiver.
type EventDelivery struct {
	// Method is DeliveryPush or DeliveryPoll.
	Method string `json:"method"`
	// EndpointURL is where a push goes (the receiver's URL), or where the receiver polls
	// (Hale's, filled in by the server).
	EndpointURL string `json:"endpoint_url,omitempty"`
	// AuthorizationHeader is sent with every push. It is write-only: the server never answers
	// it (EventStream.AuthorizationSet says whether there is one).
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// EventStreamRequest is the body of POST /ssf/v1/stream: what the receiver chooses for a new
// stream, which belongs to the token creating it.
type EventStreamRequest struct {
	// Delivery is poll when absent.
	Delivery *EventDelivery `json:"delivery,omitempty"`
	// EventsRequested are the event types wanted; none means every type Hale emits. Unknown
	// types are kept and never delivered.
	EventsRequested []string `json:"events_requested,omitempty"`
	Description     string   `json:"description,omitempty"`
	// Audience is the aud of every SET of the stream; the default is the push or poll URL.
	Audience string `json:"aud,omitempty"`
}

// EventStream is a stream as the server shows it: the answer to POST /ssf/v1/stream and GET
// /ssf/v1/stream?stream_id=, and an element of the JSON array GET /ssf/v1/stream answers
// without a stream_id. It is the stream's configuration (SSF 1.0 section 8.1.1) followed by
// Hale's own members: its status, subjects, owner and delivery state.
type EventStream struct {
	StreamID string `json:"stream_id"`
	Issuer   string `json:"iss"`
	Audience string `json:"aud"`
	// Delivery never carries the push's authorization header.
	Delivery        EventDelivery `json:"delivery"`
	EventsSupported []string      `json:"events_supported"`
	EventsRequested []string      `json:"events_requested"`
	EventsDelivered []string      `json:"events_delivered"`
	Description     string        `json:"description,omitempty"`
	// MinVerificationInterval is the seconds between verification requests.
	MinVerificationInterval int `json:"min_verification_interval,omitempty"`

	// Status is enabled, paused or disabled.
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
	// Subjects is all (every device's events, less the removed ones) or listed (only the added
	// devices').
	Subjects string `json:"subjects"`
	// Owner is the ID of the token that created the stream; absent for streams from before
	// owners.
	Owner string `json:"owner,omitempty"`
	// AuthorizationSet says a push Authorization header is set.
	AuthorizationSet bool      `json:"authorization_set,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	// Pending is the SETs waiting for delivery. The other delivery state is kept with the
	// stream, so it survives a restart and every server shows the same.
	Pending         int       `json:"pending"`
	LastDeliveredAt time.Time `json:"last_delivered_at,omitzero"`
	// LastError is a class only ("connection failed", "receiver refused: 503"), never
	// transport details.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// EventStreamStatus is GET /ssf/v1/status?stream_id=, the body of POST /ssf/v1/status and its
// answer.
type EventStreamStatus struct {
	StreamID string `json:"stream_id"`
	// Status is enabled, paused or disabled. Disabling drops the events waiting in the stream.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// EventVerifyRequest is the body of POST /ssf/v1/verify: a verification event echoing State
// is queued on the stream.
type EventVerifyRequest struct {
	StreamID string `json:"stream_id"`
	State    string `json:"state,omitempty"`
}
