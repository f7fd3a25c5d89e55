package mobile

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestGomobileTypes holds the exported API to what gomobile bind supports, so a change that
// would make gobind skip a function is caught here, where gomobile is not installed: parameters,
// results and exported struct fields are string, bool, int, int64, float64, []byte, error, a
// pointer to an exported struct of this package, or an exported interface of this package; at
// most two results, the second an error. (gobind itself was run on this package: every
// function, method and type bound for Java and Objective-C, none skipped; see README.md.)
func TestGomobileTypes(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	structs, ifaces := map[string]bool{}, map[string]bool{}
	{
		for _, f := range files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok {
					continue
				}
				for _, s := range g.Specs {
					if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.IsExported() {
						switch ts.Type.(type) {
						case *ast.StructType:
							structs[ts.Name.Name] = true
						case *ast.InterfaceType:
							ifaces[ts.Name.Name] = true
						}
					}
				}
			}
		}
	}
	ok := func(e ast.Expr) bool {
		switch x := e.(type) {
		case *ast.Ident:
			switch x.Name {
			case "string", "bool", "int", "int64", "float64", "error":
				return true
			}
			return ifaces[x.Name]
		case *ast.ArrayType:
			id, isIdent := x.Elt.(*ast.Ident)
			return x.Len == nil && isIdent && id.Name == "byte"
		case *ast.StarExpr:
			id, isIdent := x.X.(*ast.Ident)
			return isIdent && structs[id.Name]
		}
		return false
	}
	checkFunc := func(name string, ft *ast.FuncType) {
		for _, f := range ft.Params.List {
			if !ok(f.Type) {
				t.Errorf("%s: parameter type %s is not bindable", name, types(fset, f.Type))
			}
		}
		if ft.Results != nil {
			n := 0
			for i, f := range ft.Results.List {
				n += max(1, len(f.Names))
				if !ok(f.Type) {
					t.Errorf("%s: result type %s is not bindable", name, types(fset, f.Type))
				}
				if i == 1 && types(fset, f.Type) != "error" {
					t.Errorf("%s: a second result must be an error", name)
				}
			}
			if n > 2 {
				t.Errorf("%s: %d results", name, n)
			}
		}
	}
	for _, f := range files {
		for _, d := range f.Decls {
			switch x := d.(type) {
			case *ast.FuncDecl:
				if x.Name.IsExported() && (x.Recv == nil || exportedRecv(x.Recv)) {
					checkFunc(x.Name.Name, x.Type)
				}
			case *ast.GenDecl:
				for _, s := range x.Specs {
					ts, isType := s.(*ast.TypeSpec)
					if !isType || !ts.Name.IsExported() {
						continue
					}
					switch tt := ts.Type.(type) {
					case *ast.StructType:
						for _, fld := range tt.Fields.List {
							for _, n := range fld.Names {
								if n.IsExported() && !ok(fld.Type) {
									t.Errorf("%s.%s: field type %s is not bindable", ts.Name.Name, n.Name, types(fset, fld.Type))
								}
							}
						}
					case *ast.InterfaceType:
						for _, m := range tt.Methods.List {
							if ft, isFunc := m.Type.(*ast.FuncType); isFunc {
								checkFunc(ts.Name.Name+"."+m.Names[0].Name, ft)
							}
						}
					}
				}
			}
		}
	}
	if len(structs) == 0 || len(ifaces) == 0 {
		t.Fatalf("found %d structs and %d interfaces: the parse went wrong", len(structs), len(ifaces))
	}
}

func exportedRecv(r *ast.FieldList) bool {
	e := r.List[0].Type
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	id, ok := e.(*ast.Ident)
	return ok && id.IsExported()
}

func types(fset *token.FileSet, e ast.Expr) string {
	var b strings.Builder
	_ = printExpr(&b, e)
	return b.String()
}

func printExpr(b *strings.Builder, e ast.Expr) error {
	switch x := e.(type) {
	case *ast.Ident:
		b.WriteString(x.Name)
	case *ast.StarExpr:
		b.WriteString("*")
		return printExpr(b, x.X)
	case *ast.ArrayType:
		b.WriteString("[]")
		return printExpr(b, x.Elt)
	case *ast.SelectorExpr:
		_ = printExpr(b, x.X)
		b.WriteString("." + x.Sel.Name)
	default:
		b.WriteString("?")
	}
	return nil
}
