package applemdm

import (
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/seal"
)

func tokenService(t testing.TB) *Service {
	key, err := seal.New(make([]byte, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return &Service{d: Deps{Sealer: key}}
}

// An access token opens to the enrollment code it sealed; one sealed under another key or for
// another purpose, changed, or garbage does not.
func TestAccessToken(t *testing.T) {
	s := tokenService(t)
	tok := s.newAccessToken("hale_enr_abc")
	if got, err := s.openAccessToken(tok); err != nil || got != "hale_enr_abc" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	other, _ := seal.New([]byte(strings.Repeat("k", seal.KeySize)))
	forged := (&Service{d: Deps{Sealer: other}}).newAccessToken("hale_enr_abc")
	for _, bad := range []string{forged, tok[:len(tok)-2] + "AA", "", "!!", strings.Repeat("A", 2000)} {
		if _, err := s.openAccessToken(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzAccessToken: no bearer value crashes the check or opens without the server's key.
func FuzzAccessToken(f *testing.F) {
	s := tokenService(f)
	f.Add(s.newAccessToken("hale_enr_abc"))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		if got, err := s.openAccessToken(v); err == nil && got == "" {
			t.Fatal("an access token opened to no code")
		}
	})
}
