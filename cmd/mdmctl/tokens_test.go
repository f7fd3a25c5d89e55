package main

import (
	"strings"
	"testing"
)

// tokens create --person names the person a token belongs to; without it the token is the
// creating admin's own. Both create and list show the person (issue 23.1).
func TestTokensPerson(t *testing.T) {
	e := newEnv(t)
	admin := e.as(e.admin)

	r := admin.ok(t, "tokens", "create", "--name", "secops", "--role", "security", "--person", "Dana Ng")
	if !strings.Contains(r.stdout, "person:") || !strings.Contains(r.stdout, "Dana Ng") {
		t.Fatalf("create --person: %s", r.stdout)
	}
	var own struct{ Person string }
	admin.okJSON(t, &own, "tokens", "create", "--name", "admin-sec", "--role", "security")
	if own.Person != "bootstrap" {
		t.Fatalf("a token created without --person belongs to %q, want the creating admin's person (bootstrap)", own.Person)
	}
	r = admin.ok(t, "tokens", "list")
	header, _, _ := strings.Cut(r.stdout, "\n")
	if !strings.Contains(header, "PERSON") || !strings.Contains(r.stdout, "Dana Ng") {
		t.Fatalf("tokens list: %s", r.stdout)
	}
	admin.fails(t, exitUsage, "tokens", "create", "--name", "x", "--role", "it", "--person", " Dana")
}
