package text

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
)

// hostile is text a device or a user could send to make a report or a terminal lie.
const hostile = "![x](http://evil) | a | b |\u202e\u2066evil\u2069\n\r\x1b[31mred\x1b]0;title\x07\u200b\ufeff<img src=x>&#x202e;`code`\u0085\u009b2J\u2028end\xff"

func TestCleanLeavesNoControlOrFormatCharacter(t *testing.T) {
	got := Clean(hostile)
	for _, r := range got {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Fatalf("Clean left %U in %q", r, got)
		}
	}
	if !strings.Contains(got, "![x](http://evil) | a | b |evil") || !strings.Contains(got, " [31mred") || !strings.Contains(got, "\ufffd") {
		t.Errorf("Clean changed more than it must: %q", got)
	}
	for in, want := range map[string]string{"": "", "dr. Grey — ICU": "dr. Grey — ICU", "a\tb\nc": "a b c", "ab\u202ecd": "abcd"} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdownCodeSpansAreInert(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"  ":                "",
		"plain":             "`plain`",
		"![x](http://evil)": "`![x](http://evil)`",
		"a `b` c":           "``a `b` c``",
		"`edge`":            "`` `edge` ``",
		"a ``` b":           "````a ``` b````",
		"one\ntwo\u202e":    "`one two`",
	} {
		if got := MarkdownCode(in); got != want {
			t.Errorf("MarkdownCode(%q) = %q, want %q", in, got, want)
		}
	}
	if got := MarkdownCell("| a | b |"); got != "`\\| a \\| b \\|`" {
		t.Errorf("MarkdownCell = %q", got)
	}
	// The whole hostile value stays one cell on one line, inside one code span.
	cell := MarkdownCell(hostile)
	if strings.ContainsAny(cell, "\n\r\x1b\u202e\u2066\u200b\ufeff\u0085\u009b") {
		t.Fatalf("cell keeps a control or format character: %q", cell)
	}
	if strings.Count(strings.ReplaceAll(cell, `\|`, ""), "|") != 0 {
		t.Fatalf("cell has an unescaped |: %q", cell)
	}
	fence := cell[:strings.IndexFunc(cell, func(r rune) bool { return r != '`' })]
	if !strings.HasSuffix(cell, fence) || strings.Contains(cell[len(fence):len(cell)-len(fence)], fence) {
		t.Fatalf("the code span can be closed early: %q", cell)
	}
}

func TestJSONEscapesWithoutChangingTheValue(t *testing.T) {
	in := map[string]string{"detail": hostile, "astral": "tag\U000E0041"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got := JSON(b)
	for _, r := range string(got) {
		if r >= 0x7f && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			t.Fatalf("JSON left %U: %s", r, got)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("not JSON any more: %v\n%s", err, got)
	}
	var want map[string]string
	_ = json.Unmarshal(b, &want)
	if back["detail"] != want["detail"] || back["astral"] != in["astral"] {
		t.Fatalf("value changed:\n%q\n%q", back["detail"], want["detail"])
	}
	if plain := []byte(`{"a": 1}`); string(JSON(plain)) != string(plain) {
		t.Fatal("plain JSON changed")
	}
}
