package tokens

import (
	"errors"
	"strings"
	"testing"
)

func TestValidPerson(t *testing.T) {
	for _, ok := range []string{"dana", "Dr. Dana Ng-Østergaard", "李娜", strings.Repeat("p", MaxPersonLen)} {
		if err := ValidPerson(ok); err != nil {
			t.Errorf("ValidPerson(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", " dana", "dana ", "da\tna", "da\nna", "da\u202ena", "da\u200bna", "\xff", strings.Repeat("p", MaxPersonLen+1)} {
		if err := ValidPerson(bad); !errors.Is(err, ErrInvalidPerson) {
			t.Errorf("ValidPerson(%q) = %v, want ErrInvalidPerson", bad, err)
		}
	}
	if !SamePerson("Dana", "dana") || SamePerson("", "") || SamePerson("dana", "eli") {
		t.Error("SamePerson")
	}
}
