package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
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

// A token belongs to the person it names, else to its creator's person; Creators walks up to
// the bootstrap token.
func TestPersonAndCreators(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	boot, _, err := s.Create(ctx, NewRequest{Name: "bootstrap", Role: RoleAdmin, Person: "bootstrap", CreatedBy: "mdmserver"})
	if err != nil {
		t.Fatal(err)
	}
	alex, _, _ := s.Create(ctx, NewRequest{Name: "alex", Role: RoleAdmin, Person: "alex", Creator: boot})
	own, _, _ := s.Create(ctx, NewRequest{Name: "alex-sec", Role: RoleSecurity, Creator: alex})
	x, _, _ := s.Create(ctx, NewRequest{Name: "x", Role: RoleSecurity, Person: "xavier", Creator: alex})
	if own.Person != "alex" || x.Person != "xavier" || x.CreatorPerson != "alex" || x.CreatorTokenID != alex.ID {
		t.Fatalf("people: own %+v, x %+v", own, x)
	}
	for tok, want := range map[*Token][]string{boot: nil, alex: {"bootstrap"}, x: {"alex", "bootstrap"}} {
		if got, err := s.Creators(ctx, tok); err != nil || !slices.Equal(got, want) {
			t.Errorf("Creators(%s) = %v, %v; want %v", tok.Name, got, err, want)
		}
	}
	if _, _, err := s.Create(ctx, NewRequest{Name: "n", Role: RoleIT, Person: "bad\nperson", Creator: boot}); !errors.Is(err, ErrInvalidPerson) {
		t.Fatalf("invalid person: %v", err)
	}
}

// Opening a store whose tokens were written before tokens had people gives each a person named
// after it and links it to its creator; a second opening changes nothing.
func TestMigratePeople(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	legacy := map[string]map[string]any{
		"00000000000000b0": {"name": "bootstrap", "role": "admin", "created_by": "mdmserver"},
		"00000000000000a1": {"name": "secops", "role": "security", "created_by": "bootstrap (00000000000000b0)"},
		"00000000000000a2": {"name": "secops", "role": "security", "created_by": "bootstrap (00000000000000b0)"},
		"00000000000000a3": {"name": "odd\nname", "role": "it", "created_by": "gone (00000000000000ff)"},
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for id, rec := range legacy {
			rec["id"], rec["hash"] = id, strings.Repeat("0", 64)
			v, _ := json.Marshal(rec)
			if err := b.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"00000000000000b0": "bootstrap<",
		"00000000000000a1": "secops<bootstrap",
		"00000000000000a2": "secops<bootstrap",
		"00000000000000a3": "token-00000000000000a3<",
	}
	for range 2 {
		s, err := New(db)
		if err != nil {
			t.Fatal(err)
		}
		list, _ := s.List(context.Background())
		got := map[string]string{}
		for _, tok := range list {
			got[tok.ID] = tok.Person + "<" + tok.CreatorPerson
		}
		if len(got) != len(want) {
			t.Fatalf("tokens after migration: %v", got)
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("token %s: %q, want %q", id, got[id], w)
			}
		}
	}
	var migrated int
	_ = db.Update(func(tx *bbolt.Tx) error {
		migrated, err = migratePeople(tx.Bucket(bucket))
		return err
	})
	if err != nil || migrated != 0 {
		t.Fatalf("a third run migrated %d (%v), want 0", migrated, err)
	}
}
