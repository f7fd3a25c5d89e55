// Package amapischema checks JSON against the Android Management API's discovery document, the
// one shipped inside the google.golang.org/api module Hale builds with
// (androidmanagement/v1/androidmanagement-api.json). Tests use it so that a misspelled field or
// enum value Hale sends (or a fake answers) fails, instead of being dropped by encoding/json the
// way Google's server would ignore or refuse it.
//
// The document is found through `go list -m`, so the package is for tests and tools run from
// this module, not for the server.
package amapischema

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Property is one field of a schema, as the discovery document describes it.
type Property struct {
	Type                 string               `json:"type"`
	Format               string               `json:"format"`
	Ref                  string               `json:"$ref"`
	Enum                 []string             `json:"enum"`
	Items                *Property            `json:"items"`
	AdditionalProperties *Property            `json:"additionalProperties"`
	Properties           map[string]*Property `json:"properties"`
}

// Method is one API method: its HTTP verb, path template and request body schema.
type Method struct {
	ID         string `json:"id"`
	HTTPMethod string `json:"httpMethod"`
	Path       string `json:"path"`
	Request    *struct {
		Ref string `json:"$ref"`
	} `json:"request"`
	Response *struct {
		Ref string `json:"$ref"`
	} `json:"response"`
}

type resource struct {
	Methods   map[string]Method   `json:"methods"`
	Resources map[string]resource `json:"resources"`
}

// Document is the parsed discovery document.
type Document struct {
	Schemas   map[string]*Property `json:"schemas"`
	Resources map[string]resource  `json:"resources"`
	// Methods are every method by ID ("androidmanagement.enterprises.policies.patch").
	Methods map[string]Method `json:"-"`
}

var (
	once   sync.Once
	loaded *Document
	errLd  error
)

// Load reads the discovery document of the google.golang.org/api module this module requires.
func Load() (*Document, error) {
	once.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api").Output()
		if err != nil {
			errLd = fmt.Errorf("amapischema: locate google.golang.org/api: %w", err)
			return
		}
		path := filepath.Join(strings.TrimSpace(string(out)), "androidmanagement", "v1", "androidmanagement-api.json")
		b, err := os.ReadFile(path)
		if err != nil {
			errLd = fmt.Errorf("amapischema: %w", err)
			return
		}
		loaded, errLd = Parse(b)
	})
	return loaded, errLd
}

// Parse parses a discovery document.
func Parse(b []byte) (*Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("amapischema: %w", err)
	}
	d.Methods = map[string]Method{}
	var walk func(r resource)
	walk = func(r resource) {
		for _, m := range r.Methods {
			d.Methods[m.ID] = m
		}
		for _, sub := range r.Resources {
			walk(sub)
		}
	}
	for _, r := range d.Resources {
		walk(r)
	}
	return &d, nil
}

// Check validates a JSON document against the named schema ("Policy") and returns every
// problem found, each naming its JSON path; none means it conforms.
func (d *Document) Check(schema string, doc []byte) []string {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var errs []string
	d.check(&Property{Ref: schema}, v, "$", &errs, 0)
	return errs
}

// CheckValue is Check for a decoded value (maps, slices, strings, float64 or json.Number, bools).
func (d *Document) CheckValue(schema string, v any) []string {
	b, err := json.Marshal(v)
	if err != nil {
		return []string{err.Error()}
	}
	return d.Check(schema, b)
}

func (d *Document) check(p *Property, v any, path string, errs *[]string, depth int) {
	fail := func(format string, args ...any) { *errs = append(*errs, path+": "+fmt.Sprintf(format, args...)) }
	if depth > 64 {
		fail("nested too deep")
		return
	}
	if p.Ref != "" {
		s, ok := d.Schemas[p.Ref]
		if !ok {
			fail("unknown schema %s", p.Ref)
			return
		}
		p = s
	}
	if v == nil {
		return // JSON null: the field is unset
	}
	switch p.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			fail("want an object, got %T", v)
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := p.Properties[k]
			if sub == nil {
				sub = p.AdditionalProperties
			}
			if sub == nil {
				fail("unknown field %q", k)
				continue
			}
			d.check(sub, m[k], path+"."+k, errs, depth+1)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail("want an array, got %T", v)
			return
		}
		for i, e := range a {
			if p.Items != nil {
				d.check(p.Items, e, path+"["+strconv.Itoa(i)+"]", errs, depth+1)
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			fail("want a string, got %T", v)
			return
		}
		if len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
			fail("%q is not one of %s's values", s, strings.Join(p.Enum, ", "))
		}
		if p.Format == "int64" || p.Format == "uint64" {
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				fail("%q is not an %s", s, p.Format)
			}
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			fail("want an integer, got %v", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			fail("want a number, got %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("want a boolean, got %T", v)
		}
	case "any", "":
	default:
		fail("schema type %q not understood", p.Type)
	}
}
