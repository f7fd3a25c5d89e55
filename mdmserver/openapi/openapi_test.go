package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// load parses and validates a form of the document with kin-openapi, as OpenAPI 3.1.
func load(t *testing.T, name string, data []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		t.Fatalf("%s does not load: %v", name, err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("%s is OpenAPI %s, want 3.1", name, doc.OpenAPI)
	}
	// Examples and defaults are checked against their schemas too.
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation(), openapi3.EnableSchemaDefaultsValidation()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", name, err)
	}
	return doc
}

// The YAML is valid OpenAPI 3.1, and the JSON the server serves is the same document.
func TestDocumentIsValidOpenAPI(t *testing.T) {
	fromYAML := load(t, "openapi.yaml", YAML())
	fromJSON := load(t, "the JSON form", JSON())
	a, _ := json.Marshal(fromYAML)
	b, _ := json.Marshal(fromJSON)
	if !bytes.Equal(a, b) {
		t.Error("the JSON form is not the document the YAML describes")
	}
	if !json.Valid(JSON()) {
		t.Error("JSON() is not JSON")
	}
	// Every operation has an ID (clients generate names from it) and a 2xx answer.
	for path, item := range fromYAML.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			ok := false
			for code := range op.Responses.Map() {
				ok = ok || code[0] == '2'
			}
			if !ok {
				t.Errorf("%s %s documents no success answer", method, path)
			}
		}
	}
}

// The JSON keeps the YAML's order, so it reads top to bottom like the YAML.
func TestJSONKeepsOrder(t *testing.T) {
	got, err := yamlToJSON([]byte("b: 1\na: [x, {200: true, z: null}]\nc: 1.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"b":1,"a":["x",{"200":true,"z":null}],"c":1.5}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := yamlToJSON([]byte("a: &x 1\nb: *x\n")); err == nil {
		t.Error("an alias converted; it should be refused")
	}
}

func TestHandler(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		Handler().ServeHTTP(rec, httptest.NewRequest(method, Path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", method, rec.Code, rec.Header().Get("Content-Type"))
		}
		if want := map[string]int{http.MethodGet: len(JSON()), http.MethodHead: 0}[method]; rec.Body.Len() != want {
			t.Errorf("%s: body of %d bytes, want %d", method, rec.Body.Len(), want)
		}
	}
}

// The example policies, which the server accepts (examples_test.go), are valid requests as the
// document's Policy schema describes them.
func TestExamplePoliciesMatchPolicySchema(t *testing.T) {
	doc := load(t, "openapi.yaml", YAML())
	schema := doc.Components.Schemas["Policy"].Value
	files, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yamlToJSON(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var v any
		if err := json.Unmarshal(j, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%s does not match the Policy schema: %v", f, err)
		}
	}
}
