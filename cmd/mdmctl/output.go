package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/halemdm/hale/internal/text"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// show calls the API and prints the answer: the server's JSON with -o json, otherwise render's
// view of it decoded as T. Commands check their arguments and read their files before calling
// it, so a mistake on the command line is reported before a missing token or server.
func show[T any](a *app, ctx context.Context, method, path string, body any, render func(w io.Writer, v T) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, method, path, body, &raw); err != nil {
		return err
	}
	return emitAs(a, raw, render)
}

// emitAs is emit for an answer that render shows decoded as T. It is decoded only for a table:
// -o json prints the server's bytes, with the fields mdmctl does not know.
func emitAs[T any](a *app, raw json.RawMessage, render func(w io.Writer, v T) error) error {
	return a.emit(raw, func(w io.Writer) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		return render(w, v)
	})
}

// emit prints an answer: the server's JSON, indented, with -o json; otherwise what table writes.
func (a *app) emit(raw json.RawMessage, table func(w io.Writer) error) error {
	if a.output == "json" {
		return a.printJSON(raw)
	}
	return table(a.stdout)
}

// printJSON writes raw indented, or v encoded when raw is not JSON bytes, with control and
// format characters escaped.
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
	// The values are kept exactly, but a bidi override or a terminal escape in one is written
	// as a \u escape, not as itself.
	b = text.JSON(b)
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

// tableOf writes items as a table under header, one row each.
func tableOf[T any](w io.Writer, header []string, items []T, row func(T) []string) error {
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	return table(w, header, rows)
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

// cell makes a value safe for a table cell: no tabs, newlines, terminal control or Unicode
// format characters (values come from the server, from devices and from users), "-" when empty.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return sanitize(s)
}

// sanitize is text.Clean, the one cleaner for everything mdmctl prints that a device or a user
// wrote: control characters become spaces and bidi and other format characters go, so a value
// can neither rewrite the terminal nor reorder what surrounds it.
func sanitize(s string) string { return text.Clean(s) }

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

// reasonCodes joins the codes of access (posture.Reason) or compliance (policies.Reason)
// reasons: the two have one shape, and a dry run and the access check list them alike.
func reasonCodes[R posture.Reason | policies.Reason](rs []R) string {
	codes := make([]string, len(rs))
	for i, r := range rs {
		codes[i] = policies.Reason(r).Code
	}
	return strings.Join(codes, ",")
}

// writeReasons lists access or compliance reasons under the field they explain, one per line.
func writeReasons[R posture.Reason | policies.Reason](w io.Writer, rs []R) {
	for _, r := range rs {
		r := policies.Reason(r)
		fmt.Fprintf(w, "  %s: %s\n", sanitize(r.Code), sanitize(r.Detail))
	}
}
