package policies

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxProblems bounds the problems reported for one document; past it the rest is noise and
// only costs time.
const maxProblems = 100

// decoder walks the node tree and collects problems instead of stopping at the first.
type decoder struct {
	problems  []Problem
	truncated bool
}

func (d *decoder) fail(field string, n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	if len(d.problems) >= maxProblems {
		if !d.truncated {
			d.truncated = true
			d.problems = append(d.problems, Problem{Field: "document", Line: line,
				Message: fmt.Sprintf("more than %d problems; fix these and try again", maxProblems)})
		}
		return
	}
	if field == "" {
		field = "document"
	}
	d.problems = append(d.problems, Problem{Field: field, Line: line, Message: fmt.Sprintf(format, args...)})
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// mapping calls each handler for the keys present in a mapping node. It reports non-mappings,
// unknown and duplicate keys, and aliases. It returns false if n is not a usable mapping.
func (d *decoder) mapping(field string, n *yaml.Node, handlers map[string]func(field string, v *yaml.Node)) bool {
	if !d.kind(field, n, yaml.MappingNode, "a mapping") {
		return false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	known := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.fail(field, k, "keys must be plain strings")
			continue
		}
		name := join(field, k.Value)
		if seen[k.Value] {
			d.fail(name, k, "defined more than once")
			continue
		}
		seen[k.Value] = true
		h, ok := handlers[k.Value]
		if !ok {
			if known == "" {
				known = knownKeys(handlers)
			}
			d.fail(name, k, "unknown field; known fields are %s", known)
			continue
		}
		if v.Kind == yaml.AliasNode {
			d.fail(name, v, "YAML aliases are not supported; write the value out")
			continue
		}
		h(name, v)
	}
	return true
}

func knownKeys[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// kind checks a node's kind; a null value is reported as missing.
func (d *decoder) kind(field string, n *yaml.Node, want yaml.Kind, what string) bool {
	if n.Kind == want {
		return true
	}
	if n.Kind == yaml.AliasNode {
		d.fail(field, n, "YAML aliases are not supported; write the value out")
		return false
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		d.fail(field, n, "is empty; give %s or remove the field", what)
		return false
	}
	d.fail(field, n, "must be %s", what)
	return false
}

func (d *decoder) boolean(field string, n *yaml.Node, dst *bool) {
	if !d.kind(field, n, yaml.ScalarNode, "true or false") {
		return
	}
	if n.ShortTag() != "!!bool" {
		d.fail(field, n, "must be true or false (got %q)", clip(n.Value))
		return
	}
	v, err := strconv.ParseBool(strings.ToLower(n.Value))
	if err != nil {
		d.fail(field, n, "must be true or false (got %q)", clip(n.Value))
		return
	}
	*dst = v
}

func (d *decoder) optBool(field string, n *yaml.Node, dst **bool) {
	var v bool
	before := len(d.problems)
	d.boolean(field, n, &v)
	if len(d.problems) == before {
		*dst = &v
	}
}

func (d *decoder) integer(field string, n *yaml.Node, lo, hi int, dst *int) bool {
	if !d.kind(field, n, yaml.ScalarNode, "a whole number") {
		return false
	}
	if n.ShortTag() != "!!int" {
		d.fail(field, n, "must be a whole number between %d and %d (got %q)", lo, hi, clip(n.Value))
		return false
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < int64(lo) || v > int64(hi) {
		d.fail(field, n, "must be between %d and %d (got %s)", lo, hi, clip(n.Value))
		return false
	}
	*dst = int(v)
	return true
}

func (d *decoder) str(field string, n *yaml.Node, maxLen int, dst *string) bool {
	if !d.kind(field, n, yaml.ScalarNode, "a string") {
		return false
	}
	if n.ShortTag() != "!!str" {
		d.fail(field, n, "must be a string (got %q); quote it", clip(n.Value))
		return false
	}
	if len(n.Value) > maxLen {
		d.fail(field, n, "is %d bytes long; the limit is %d", len(n.Value), maxLen)
		return false
	}
	if strings.ContainsFunc(n.Value, isControl) {
		d.fail(field, n, "contains control characters")
		return false
	}
	*dst = n.Value
	return true
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func (d *decoder) duration(field string, n *yaml.Node, lo, hi time.Duration, dst *Duration) {
	var s string
	if !d.str(field, n, 64, &s) {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.fail(field, n, "must be a duration such as \"15m\" or \"24h\" (got %q)", clip(s))
		return
	}
	if v < lo || v > hi {
		d.fail(field, n, "must be between %s and %s (got %s)", lo, hi, v)
		return
	}
	*dst = Duration(v)
}

// version reads a dotted numeric version. Unquoted versions such as 17.4 arrive as YAML floats;
// the literal text is kept, so "22.04" stays "22.04".
func (d *decoder) version(field string, n *yaml.Node, dst *string) {
	if !d.kind(field, n, yaml.ScalarNode, "a version such as \"17.4\"") {
		return
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
	default:
		d.fail(field, n, "must be a version such as \"17.4\" (got %q)", clip(n.Value))
		return
	}
	if err := validVersion(n.Value); err != nil {
		d.fail(field, n, "%v", err)
		return
	}
	*dst = n.Value
}

// clip shortens user input quoted back in messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
