package tokens

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPersonLen bounds a person's name in bytes.
const MaxPersonLen = 128

// maxCreatorDepth bounds the walk up a token's creators: far deeper than any real chain of
// admins, and a stop should a record ever point in a circle.
const maxCreatorDepth = 64

// ErrInvalidPerson is returned for a person name ValidPerson refuses.
var ErrInvalidPerson = errors.New("tokens: person must be 1 to 128 bytes of printable text, without leading or trailing spaces")

// ValidPerson checks a person's name: 1 to [MaxPersonLen] bytes of printable UTF-8 (letters,
// marks, digits, punctuation, symbols and the ASCII space; no control, format or bidi
// characters), not starting or ending with a space. Nothing is trimmed or replaced: a name that
// does not pass is refused, so what the admin typed is what the audit log shows.
func ValidPerson(p string) error {
	if p == "" || len(p) > MaxPersonLen || !utf8.ValidString(p) || strings.TrimSpace(p) != p {
		return ErrInvalidPerson
	}
	for _, r := range p {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %U is not printable", ErrInvalidPerson, r)
		}
	}
	return nil
}

// SamePerson reports whether a and b name one person. People are compared without regard to
// case ("Dana" and "dana" are one person); an empty name matches nobody.
func SamePerson(a, b string) bool { return a != "" && b != "" && strings.EqualFold(a, b) }

// Creators returns the people whose tokens created t, nearest first: the person of the token
// that created t, then of the token that created that one, up to the server's own bootstrap
// token. A person who appears here could have minted t for themselves.
func Creators(ctx context.Context, repo Repository, t *Token) ([]string, error) {
	var out []string
	cur := t
	for range maxCreatorDepth {
		if cur.CreatorPerson != "" {
			out = append(out, cur.CreatorPerson)
		}
		if cur.CreatorTokenID == "" {
			return out, nil
		}
		next, err := repo.Get(ctx, cur.CreatorTokenID)
		if errors.Is(err, ErrNotFound) {
			return out, fmt.Errorf("tokens: token %s names creator %s, which is not stored", cur.ID, cur.CreatorTokenID)
		} else if err != nil {
			return out, err
		}
		cur = next
	}
	return out, fmt.Errorf("tokens: token %s has more than %d creators", t.ID, maxCreatorDepth)
}

// createdByRE reads the creator's token ID from CreatedBy as the API wrote it before tokens
// had people: "<name> (<token id>)".
var createdByRE = regexp.MustCompile(`\(([0-9a-f]{16})\)$`)

// MigratePeople gives each token stored without a person a person named after the token (its
// name; "token-<id>" when the name is not a valid person name), and links it to the token
// that created it, read from CreatedBy, when that token is stored. Tokens that share a name
// thereby belong to one person, which is the point: the two-person rule then refuses them as a
// pair. It runs in the caller's unit of work, touches only tokens without a person (so a
// second run changes nothing), and returns how many it changed.
func MigratePeople(ctx context.Context, repo Repository) (int, error) {
	list, err := repo.List(ctx)
	if err != nil {
		return 0, err
	}
	all := map[string]*Token{}
	var todo []*Token
	for _, t := range list {
		all[t.ID] = t
		if t.Person == "" {
			todo = append(todo, t)
		}
	}
	for _, t := range todo {
		t.Person = t.Name
		if ValidPerson(t.Person) != nil {
			t.Person = "token-" + t.ID
		}
	}
	for _, t := range todo {
		if t.CreatorTokenID == "" {
			if m := createdByRE.FindStringSubmatch(t.CreatedBy); m != nil && all[m[1]] != nil && m[1] != t.ID {
				t.CreatorTokenID, t.CreatorPerson = m[1], all[m[1]].Person
			}
		}
		if err := repo.Put(ctx, t); err != nil {
			return 0, err
		}
	}
	return len(todo), nil
}
