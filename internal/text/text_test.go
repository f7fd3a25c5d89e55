package text

import "testing"

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{"dr. Grey — ICU": true, "": true, "a\nb": false, "\x1b[31m": false, "\xff": false} {
		if Printable(s) != want {
			t.Errorf("Printable(%q) = %v", s, !want)
		}
	}
}
