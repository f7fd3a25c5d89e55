// Package openapi holds Hale's HTTP API contract: one OpenAPI 3.1 document, written as YAML
// (openapi.yaml) and served as JSON at GET /api/v1/openapi.json. The handler tests check every
// request and answer they make against it (internal/apitest), and a test holds it to the
// server's route table, so it cannot drift from the code.
//
// The document is served without a token: like /.well-known/ssf-configuration and the JWKS it
// is a discovery document, the same for every installation (it is this file, published with
// the source), and names no device, person or setting.
package openapi

import (
	_ "embed"
	"net/http"
	"sync"
)

// Path is where the server serves the document.
const Path = "/api/v1/openapi.json"

//go:embed openapi.yaml
var document []byte

// YAML returns the document as written. The caller must not change it.
func YAML() []byte { return document }

// JSON returns the document as JSON, members in the order the YAML has them. The caller must
// not change it.
func JSON() []byte { return converted() }

// converted is the JSON form, made once: the YAML is fixed at build time, and a test fails if it
// does not convert, so a running server never meets an error here.
var converted = sync.OnceValue(func() []byte {
	b, err := yamlToJSON(document)
	if err != nil {
		panic("openapi: the embedded document does not convert to JSON: " + err.Error())
	}
	return b
})

// Handler serves the document as JSON (GET and HEAD; the server's router refuses other
// methods).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := JSON()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		// It changes only with a new build; an hour's caching costs a client nothing.
		h.Set("Cache-Control", "public, max-age=3600")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	})
}
