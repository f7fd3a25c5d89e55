package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// check validates a form of the document with kin-openapi, as OpenAPI 3.1.
func check(t *testing.T, name string, doc *openapi3.T) *openapi3.T {
	t.Helper()
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("%s is OpenAPI %s, want 3.1", name, doc.OpenAPI)
	}
	// Examples and defaults are checked against their schemas too.
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation(), openapi3.EnableSchemaDefaultsValidation()); err != nil {
		t.Fatalf("%s is not valid OpenAPI: %v", name, err)
	}
	return doc
}

// loadServed loads the JSON the server serves as a client would: one file, with a loader that
// follows no $ref out of it.
func loadServed(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(JSON())
	if err != nil {
		t.Fatalf("the JSON form does not load on its own: %v", err)
	}
	return check(t, "the JSON form", doc)
}

// The YAML parts are valid OpenAPI 3.1, and the JSON the server serves is the same document,
// whole in one file.
func TestDocumentIsValidOpenAPI(t *testing.T) {
	parts, err := load()
	if err != nil {
		t.Fatalf("the YAML parts do not load: %v", err)
	}
	fromYAML := check(t, "the YAML parts", parts)
	fromJSON := loadServed(t)
	a, _ := json.Marshal(fromYAML)
	b, _ := json.Marshal(fromJSON)
	if !bytes.Equal(a, b) {
		t.Error("the JSON form is not the document the YAML describes")
	}
	if !json.Valid(JSON()) {
		t.Error("JSON() is not JSON")
	}
	// Every operation has an ID (clients generate names from it) and a 2xx answer (or, for a
	// page whose success sends the browser on, a 3xx).
	for path, item := range fromYAML.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			ok := false
			for code := range op.Responses.Map() {
				ok = ok || code[0] == '2' || code == "302" || code == "303"
			}
			if !ok {
				t.Errorf("%s %s documents no success answer", method, path)
			}
		}
	}
}

// The served document has exactly the components the root lists, under the root's names: a
// part that named a component by its own file, or a root entry pointing at a component of
// another name, would add one that the root does not list.
func TestComponentsAreTheRootsIndex(t *testing.T) {
	var root, doc struct {
		Components map[string]map[string]any `json:"components"`
	}
	src, err := sources.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yamlToJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &root); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(JSON(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		of       string
		from, to map[string]map[string]any
	}{{"served", root.Components, doc.Components}, {"listed in the root", doc.Components, root.Components}} {
		for kind, names := range c.from {
			for name := range names {
				if _, ok := c.to[kind][name]; !ok {
					t.Errorf("components/%s/%s is not %s", kind, name, c.of)
				}
			}
		}
	}
}

// Every part is read: a file in paths/ or components/ that no $ref reaches would be
// documentation that is never served.
func TestEveryPartIsUsed(t *testing.T) {
	used := map[string]bool{"openapi.yaml": true}
	for _, dir := range []string{".", "paths", "components"} {
		files, err := fs.Glob(sources, path.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, _ := sources.ReadFile(f)
			for _, m := range partRef.FindAllStringSubmatch(string(b), -1) {
				used[path.Join(dir, m[1])] = true
			}
		}
	}
	if err := fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !used[p] {
			t.Errorf("%s is embedded but no $ref names it", p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// partRef finds the file a $ref names.
var partRef = regexp.MustCompile(`\$ref: "([^"#]+)#`)

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
	doc := loadServed(t)
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
