package approvals

import (
	"errors"
	"testing"
)

// The rule compares people, and the people who made each other's tokens.
func TestSecondPerson(t *testing.T) {
	dana := Party{TokenID: "t1", Person: "dana", Creators: []string{"alex", "bootstrap"}}
	for name, c := range map[string]struct {
		requester, decider Party
		want               error
	}{
		"same token":                  {dana, dana, ErrSamePerson},
		"same person, other token":    {dana, Party{TokenID: "t2", Person: "Dana"}, ErrSamePerson},
		"decider made the requester":  {dana, Party{TokenID: "t3", Person: "alex"}, ErrCreator},
		"decider's maker's maker":     {dana, Party{TokenID: "t4", Person: "bootstrap"}, ErrCreator},
		"requester made the decider":  {dana, Party{TokenID: "t5", Person: "x", Creators: []string{"dana", "alex"}}, ErrCreator},
		"second person":               {dana, Party{TokenID: "t6", Person: "eli", Creators: []string{"alex", "bootstrap"}}, nil},
		"stored without people":       {Party{TokenID: "t1"}, Party{TokenID: "t7"}, nil},
		"stored without people, same": {Party{TokenID: "t1"}, Party{TokenID: "t1"}, ErrSamePerson},
	} {
		if err := SecondPerson(c.requester, c.decider); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
