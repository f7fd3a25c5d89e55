package randid

import (
	"regexp"
	"testing"
)

func TestShapes(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		u := UUID()
		if !uuid.MatchString(u) || seen[u] {
			t.Fatalf("UUID %q (repeat %v)", u, seen[u])
		}
		seen[u] = true
	}
	if h := Hex(8); len(h) != 16 || !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(h) {
		t.Errorf("Hex(8) = %q", h)
	}
	if d := Digits(6); !regexp.MustCompile(`^[0-9]{6}$`).MatchString(d) {
		t.Errorf("Digits(6) = %q", d)
	}
	// Every digit shows up: the PINs are not biased to a subset.
	counts := map[rune]int{}
	for _, r := range Digits(10000) {
		counts[r]++
	}
	for r := '0'; r <= '9'; r++ {
		if counts[r] < 800 {
			t.Errorf("digit %c appeared %d times in 10,000", r, counts[r])
		}
	}
}
