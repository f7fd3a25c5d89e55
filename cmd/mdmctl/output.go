package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// emit prints an answer: the server's JSON, indented, with -o json; otherwise what table writes.
func (a *app) emit(raw json.RawMessage, table func(w io.Writer) error) error {
	if a.output == "json" {
		return a.printJSON(raw)
	}
	return table(a.stdout)
}

// printJSON writes raw indented, or v encoded when raw is not JSON bytes.
func (a *app) printJSON(v any) error {
	var b []byte
	switch raw := v.(type) {
	case json.RawMessage:
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("the server's answer is not JSON: %w", err)
		}
		b = buf.Bytes()
	default:
		var err error
		if b, err = json.MarshalIndent(v, "", "  "); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// table writes rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = cell(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields writes "key: value" pairs, aligned, skipping empty values.
func fields(w io.Writer, kv ...string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], sanitize(kv[i+1]))
	}
	return tw.Flush()
}

// cell makes a value safe for a table cell: no tabs, newlines or terminal control characters
// (values come from the server and from devices), "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return sanitize(s)
}

// sanitize replaces control characters, so a device name cannot rewrite the terminal.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// ts formats a time for a table: UTC, to the second; "" for the zero time.
func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// yesNo formats a boolean for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// reasonCodes joins the codes of access or compliance reasons.
func reasonCodes(rs []reason) string {
	codes := make([]string, len(rs))
	for i, r := range rs {
		codes[i] = r.Code
	}
	return strings.Join(codes, ",")
}

// reason is an access or compliance reason as the server sends it.
type reason struct {
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}
