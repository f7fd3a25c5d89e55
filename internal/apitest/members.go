package apitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// undeclaredMembers reports the members of a JSON answer that its schema does not name. The
// document leaves answers open, so that clients ignore what a later release adds; the tests
// close them, so a member the server starts sending cannot go undocumented.
func undeclaredMembers(resp *http.Response, schema *openapi3.Schema, body []byte) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var values []any
	switch {
	case mt == "application/jsonl":
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var lines []any
		for sc.Scan() {
			var v any
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				lines = append(lines, v)
			}
		}
		values = append(values, lines)
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil // not JSON: the schema check already said so
		}
		values = append(values, v)
	default:
		return nil
	}
	var extra []string
	for _, v := range values {
		extra = append(extra, undeclared(schema, v)...)
	}
	if len(extra) > 0 {
		return fmt.Errorf("answer %d carries members its schema does not name: %s", resp.StatusCode, strings.Join(extra, ", "))
	}
	return nil
}

// undeclared lists, by JSON path, the object members in v that schema declares nowhere.
func undeclared(schema *openapi3.Schema, v any) []string {
	var out []string
	walkUndeclared([]*openapi3.Schema{schema}, v, "$", &out)
	slices.Sort(out)
	return out
}

// walkUndeclared checks v against every schema in schemas at once: a member is declared when
// any of them (or of their allOf, anyOf and oneOf branches) declares it. An object whose
// schemas name no properties is free-form, and so is one whose schemas allow additional
// properties; those given a schema are checked against it.
func walkUndeclared(schemas []*openapi3.Schema, v any, path string, out *[]string) {
	all := branches(schemas)
	switch v := v.(type) {
	case map[string]any:
		props := map[string][]*openapi3.Schema{}
		var extra []*openapi3.Schema
		open := false
		for _, s := range all {
			for name, p := range s.Properties {
				if p != nil && p.Value != nil {
					props[name] = append(props[name], p.Value)
				}
			}
			if ap := s.AdditionalProperties; ap.Schema != nil && ap.Schema.Value != nil {
				extra = append(extra, ap.Schema.Value)
			} else if ap.Has != nil && *ap.Has || len(s.PatternProperties) > 0 {
				open = true
			}
		}
		for k, val := range v {
			p := path + "." + k
			switch {
			case props[k] != nil:
				walkUndeclared(props[k], val, p, out)
			case extra != nil:
				walkUndeclared(extra, val, p, out)
			case len(props) > 0 && !open:
				*out = append(*out, p)
			}
		}
	case []any:
		var items []*openapi3.Schema
		for _, s := range all {
			if s.Items != nil && s.Items.Value != nil {
				items = append(items, s.Items.Value)
			}
		}
		if items == nil {
			return
		}
		for i, e := range v {
			walkUndeclared(items, e, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// branches returns schemas and, recursively, the schemas of their allOf, anyOf and oneOf.
func branches(schemas []*openapi3.Schema) []*openapi3.Schema {
	var out []*openapi3.Schema
	var add func(s *openapi3.Schema)
	add = func(s *openapi3.Schema) {
		if s == nil || slices.Contains(out, s) {
			return
		}
		out = append(out, s)
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, r := range group {
				if r != nil {
					add(r.Value)
				}
			}
		}
	}
	for _, s := range schemas {
		add(s)
	}
	return out
}
