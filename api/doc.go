// Package api holds the wire types of Hale's HTTP APIs: the JSON requests and answers of the
// admin API (/api/v1), the agent API (/agent/v1), the access API (/access/v1) and the event
// stream management API (/ssf/v1, OpenID SSF 1.0). The server
// encodes them, and mdmctl and mdmagent decode them, so no program keeps a copy of its own.
// (The access API's decision and the SETs a messaging backend reads live in package posture,
// the backend's SDK.)
//
// The package is pure: it imports nothing of the server, so the agent can link it. Each file
// covers one part of the API; the OpenAPI document (mdmserver/openapi) describes the same
// shapes, and the handler tests check every exchange against it.
package api
