package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a policy document: the field (dotted path such as
// "passcode.min_length" or "notifications.apps[1].bundle_id", or "document" for the whole
// input), the 1-based line it is on (0 when the input has no line, such as an oversized
// document) and what is wrong.
type Problem struct {
	Field   string `json:"field"`
	Line    int    `json:"line"`
	Message string `json:"message"`
}

// String formats the problem as "line N: field: message".
func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Message)
	}
	return p.Field + ": " + p.Message
}

// ValidationError lists every problem found in a policy document, in document order.
type ValidationError struct {
	Problems []Problem `json:"problems"`
}

// Error lists every problem on one line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid policy: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Parse decodes and validates a policy document in YAML or JSON (JSON is read as YAML, so line
// numbers work for both). Unknown fields, wrong types and out-of-range values are errors; all of
// them are returned at once as a *ValidationError.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, &ValidationError{Problems: []Problem{{
			Field:   "document",
			Message: fmt.Sprintf("policy is %d bytes; the limit is %d", len(data), MaxPolicySize),
		}}}
	}
	root, prob := parseDocument(data)
	if prob != nil {
		return nil, &ValidationError{Problems: []Problem{*prob}}
	}
	d := &decoder{}
	p := d.policy(root)
	if len(d.problems) > 0 {
		return nil, &ValidationError{Problems: d.problems}
	}
	return p, nil
}

// yamlLine pulls the line number out of a yaml.v3 error message ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`line (\d+)`)

// parseDocument reads exactly one YAML document and returns its root node.
func parseDocument(data []byte) (*yaml.Node, *Problem) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Problem{Field: "document", Line: 1, Message: "policy is empty"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, &Problem{Field: "document", Line: 1, Message: "policy is empty"}
	} else if err != nil {
		if p := jsonSyntaxProblem(data); p != nil {
			return nil, p
		}
		if fixed, ok := yamlCompatibleJSON(data); ok {
			return parseDocument(fixed)
		}
		return nil, syntaxProblem(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(err)
	default:
		return nil, &Problem{Field: "document", Line: extra.Line, Message: "more than one YAML document; a policy is one document"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Problem{Field: "document", Line: 1, Message: "policy is empty"}
	}
	return doc.Content[0], nil
}

// jsonSyntaxProblem re-reads a document that failed as YAML and looks like JSON with the JSON
// decoder, whose syntax errors carry an exact offset; the YAML parser often reports a JSON
// mistake on the line where the enclosing flow collection starts.
func jsonSyntaxProblem(data []byte) *Problem {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil
	}
	lead := int64(len(data) - len(trimmed))
	var v any
	err := json.Unmarshal(trimmed, &v)
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return nil
	}
	off := min(lead+max(se.Offset, 1), int64(len(data)))
	return &Problem{
		Field:   "document",
		Line:    1 + bytes.Count(data[:off-1], []byte("\n")),
		Message: "not valid JSON: " + se.Error(),
	}
}

// yamlCompatibleJSON rewrites valid JSON that the YAML parser refuses into an equivalent that it
// accepts, keeping every byte on its line. The one such construct is the "\/" escape, which JSON
// allows and yaml.v3 does not. ok is false when there was nothing to rewrite.
func yamlCompatibleJSON(data []byte) (fixed []byte, ok bool) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) || !bytes.Contains(data, []byte(`\/`)) {
		return nil, false
	}
	out := make([]byte, 0, len(data))
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case !inString:
			inString = c == '"'
		case c == '\\' && i+1 < len(data):
			if data[i+1] == '/' {
				out = append(out, '/')
				i++
				continue
			}
			out = append(out, c, data[i+1])
			i++
			continue
		case c == '"':
			inString = false
		}
		out = append(out, c)
	}
	return out, true
}

func syntaxProblem(err error) *Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := &Problem{Field: "document", Message: "not valid YAML or JSON: " + msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
	}
	if p.Line <= 0 {
		p.Line = 1
	}
	return p
}
