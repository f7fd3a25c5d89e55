package tokens

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add("hale_0123456789abcdef_" + strings.Repeat("ab", 32))
	f.Add("hale__")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := parse(s)
		if ok && (len(id) != 16 || len(secret) != 64 || !strings.HasPrefix(s, prefix)) {
			t.Fatalf("parse accepted %q as %q/%q", s, id, secret)
		}
	})
}
