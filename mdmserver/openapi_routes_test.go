package mdmserver_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/halemdm/hale/mdmserver/openapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// muxPatterns returns the literal patterns this package's non-test files register with
// mux.Handle and mux.HandleFunc: every route but the token routes, which tokenRoutes lists
// and routes registers in a loop. The catch-all "/" is left out: it is no endpoint.
func muxPatterns(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "mux" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true // rt.pattern: the token routes
			}
			if p, err := strconv.Unquote(lit.Value); err == nil && p != "/" {
				out = append(out, p)
			}
			return true
		})
	}
	return out
}

// The OpenAPI document and the server's route table describe the same endpoints: every route
// the server registers has its operations in the document, with the roles tokenRoutes gives it,
// and every operation in the document reaches the route of the same pattern.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON())
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t)

	// Server to document.
	plain := muxPatterns(t)
	for _, must := range []string{"GET /healthz", "/mdm", "GET " + openapi.Path} {
		if !slices.Contains(plain, must) {
			t.Fatalf("found no %q among the mux patterns %q: has routes() moved out of mux.Handle calls?", must, plain)
		}
	}
	roles := map[string][]string{} // pattern → roles in the document's terms
	for _, rt := range env.TokenRoutesForTest() {
		r := []string{string(tokens.RoleAdmin)}
		for _, role := range rt.Roles {
			r = append(r, string(role))
		}
		roles[rt.Pattern] = r
	}
	for _, pattern := range append(plain, keys(roles)...) {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok { // a pattern for every method (/mdm, /scep): Apple's and SCEP's own protocols
			method, path = "", pattern
		}
		item := doc.Paths.Value(path)
		if item == nil {
			t.Errorf("route %q: path %s is not in the document", pattern, path)
			continue
		}
		if method == "" {
			if len(item.Operations()) == 0 {
				t.Errorf("route %q: the document has no operation on %s", pattern, path)
			}
			continue
		}
		op := item.GetOperation(method)
		if op == nil {
			t.Errorf("route %q: the document has no %s on %s", pattern, method, path)
			continue
		}
		want, isToken := roles[pattern]
		got := documentedRoles(op)
		switch {
		case isToken && !hasScheme(op, "bearerToken"):
			t.Errorf("route %q needs a bearer token; the document does not say so", pattern)
		case !isToken && hasScheme(op, "bearerToken"):
			t.Errorf("route %q needs no bearer token; the document asks for one", pattern)
		case !sameSet(got, want):
			t.Errorf("route %q allows roles %v; the document's x-hale-roles say %v", pattern, want, got)
		}
	}

	// Document to server: each operation, asked of the server's mux, reaches the pattern the
	// document names (or a pattern for every method on that path).
	mux, ok := env.RoutesForTest().(*http.ServeMux)
	if !ok {
		t.Fatalf("routes() is a %T, not an *http.ServeMux", env.RoutesForTest())
	}
	fill := strings.NewReplacer("{id}", "x1", "{name}", "x2", "{uuid}", "x3", "{token}", "x4")
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			r := httptest.NewRequest(method, fill.Replace(path), nil)
			if _, got := mux.Handler(r); got != method+" "+path && got != path {
				t.Errorf("the document's %s %s reaches the server's route %q", method, path, got)
			}
		}
	}
}

func keys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// documentedRoles is an operation's x-hale-roles.
func documentedRoles(op *openapi3.Operation) []string {
	list, _ := op.Extensions["x-hale-roles"].([]any)
	var out []string
	for _, r := range list {
		s, _ := r.(string)
		out = append(out, s)
	}
	return out
}

// hasScheme reports whether any of the operation's security requirements uses scheme.
func hasScheme(op *openapi3.Operation, scheme string) bool {
	if op.Security == nil {
		return false
	}
	for _, req := range *op.Security {
		if _, ok := req[scheme]; ok {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
