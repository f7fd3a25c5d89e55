// Package openapi holds Hale's HTTP API contract: one OpenAPI 3.1 document, written as YAML in
// parts joined by $ref (openapi.yaml is the root and index; paths/ holds the operations by area
// of the API, components/ what they share and the schemas) and served as one JSON document at
// GET /api/v1/openapi.json. The handler tests check every request and answer they make against
// the served document (internal/apitest), and a test holds it to the server's route table, so it
// cannot drift from the code.
//
// The document is served without a token: like /.well-known/ssf-configuration and the JWKS it
// is a discovery document, the same for every installation (it is these files, published with
// the source), and names no device, person or setting.
package openapi

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
)

// Path is where the server serves the document.
const Path = "/api/v1/openapi.json"

// root is the part the others hang from.
const root = "openapi.yaml"

// sources are the document's parts. The server reads them from here, never from disk, so the
// document it serves is the one it was built with.
//
//go:embed openapi.yaml paths/*.yaml components/*.yaml
var sources embed.FS

// JSON returns the document as one JSON file: the parts resolved, every $ref pointing into its
// own components. The caller must not change it.
func JSON() []byte { return served() }

// served is the JSON form, made once: the parts are fixed at build time, and a test fails if
// they do not load, so a running server never meets an error here.
var served = sync.OnceValue(func() []byte {
	doc, err := load()
	if err == nil {
		var b []byte
		if b, err = json.Marshal(doc); err == nil {
			return b
		}
	}
	panic("openapi: the embedded document does not load: " + err.Error())
})

// load reads the document from its parts with kin-openapi's loader and internalizes it: each
// $ref into a part is replaced by one into the document's own components, so that a client
// fetches one file. Each call returns a new document.
func load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	loader.ReadFromURIFunc = readPart
	doc, err := loader.LoadFromURI(&url.URL{Path: root})
	if err != nil {
		return nil, err
	}
	doc.InternalizeRefs(context.Background(), componentName)
	return doc, nil
}

// readPart hands the loader one part as JSON. The loader asks for a part again at every $ref
// into it, so each is converted once.
func readPart(_ *openapi3.Loader, u *url.URL) ([]byte, error) {
	if u.Scheme != "" || u.Host != "" {
		return nil, fmt.Errorf("openapi: %s: a $ref may name only the document's own parts", u)
	}
	all, err := parts()
	if err != nil {
		return nil, err
	}
	name := path.Clean(u.Path)
	b, ok := all[name]
	if !ok {
		return nil, fmt.Errorf("openapi: %s: no such part", name)
	}
	return b, nil
}

// parts are the embedded files by name, converted to JSON by yamlToJSON, which refuses anchors,
// aliases and files of several documents: a reader finds every value where it applies.
var parts = sync.OnceValues(func() (map[string][]byte, error) {
	all := map[string][]byte{}
	err := fs.WalkDir(sources, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := sources.ReadFile(name)
		if err != nil {
			return err
		}
		if all[name], err = yamlToJSON(b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return all, nil
})

// componentName names a component moved into the root: the last token of the JSON pointer its
// $ref resolves to. The parts name every component through the root
// (../openapi.yaml#/components/schemas/Device), and the root's entry points at the part that
// defines it under the same name, so every component keeps the name the root gives it.
func componentName(_ *openapi3.T, ref openapi3.ComponentRef) string {
	frag := ref.RefPath().Fragment
	name := frag[strings.LastIndex(frag, "/")+1:]
	return strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~")
}

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
