package text

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Clean returns s fit to print on a terminal or to write into a report. Control characters (C0,
// DEL and C1: escape sequences, newlines, tabs) and the Unicode line and paragraph separators
// become a space, so a value cannot move the cursor, restyle the terminal or start a new table
// row; format characters (Unicode category Cf: bidi overrides and isolates, zero-width
// characters, the byte order mark) are removed, so a value cannot reorder or hide what
// surrounds it; invalid UTF-8 becomes U+FFFD.
func Clean(s string) string {
	if plainASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case unsafeSpace(r):
			b.WriteByte(' ')
		case unicode.Is(unicode.Cf, r):
		default:
			b.WriteRune(r) // an invalid byte arrives here as utf8.RuneError, written as U+FFFD
		}
	}
	return b.String()
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// unsafeSpace reports whether r is a control character or a line or paragraph separator.
func unsafeSpace(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029'
}

// MarkdownCode returns s, cleaned and trimmed, as a Markdown code span, or "" for an empty s.
// Every CommonMark and GitHub renderer shows a code span's content as it is: no image, link,
// autolink, raw HTML, entity or emphasis inside one is rendered. The fence is longer than any run
// of backticks in s, so s cannot close it.
func MarkdownCode(s string) string {
	s = strings.TrimSpace(Clean(s))
	if s == "" {
		return ""
	}
	fence := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		// One space on each side is stripped again by the renderer; it keeps a backtick at
		// either end from joining the fence.
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// MarkdownCell is MarkdownCode for a cell of a GitHub-flavoured Markdown table, where "|" ends
// the cell even inside a code span unless it is escaped.
func MarkdownCell(s string) string {
	return strings.ReplaceAll(MarkdownCode(s), "|", `\|`)
}

func longestRun(s string, c byte) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// JSON returns the JSON document b with every control, separator and format character written
// as a \u escape, so that printing or opening the document shows no raw bidi override or
// terminal escape. Such characters can occur only inside JSON strings, where the escape keeps
// the value exactly; invalid UTF-8 is written as \ufffd.
func JSON(b []byte) []byte {
	if plainASCIIBytes(b) {
		return b
	}
	var out bytes.Buffer
	out.Grow(len(b) + 16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1:
			out.WriteString(`\ufffd`)
		case r >= 0x7f && (unsafeSpace(r) || unicode.Is(unicode.Cf, r)):
			// Below 0x7f, JSON strings already hold only escaped control characters; the
			// ASCII outside strings is the document's own whitespace and must stay.
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				fmt.Fprintf(&out, `\u%04x\u%04x`, r1, r2)
			} else {
				fmt.Fprintf(&out, `\u%04x`, r)
			}
		default:
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.Bytes()
}

func plainASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x7f {
			return false
		}
	}
	return true
}
