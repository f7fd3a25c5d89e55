// Package text holds the checks Hale applies to free text from the network (owners, groups,
// hostnames, tokens) before it is stored or logged, and the one way to make such text, or any
// text a device or a user wrote, safe to show: on a terminal (Clean), in Markdown (MarkdownCode,
// MarkdownCell) and in JSON meant for people to read (JSON).
package text

import (
	"unicode"
	"unicode/utf8"
)

// Printable reports whether s is valid UTF-8 made only of printable characters: no control
// characters that could forge log lines or confuse a terminal.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
