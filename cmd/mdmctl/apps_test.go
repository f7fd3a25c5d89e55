package main

import (
	"strings"
	"testing"

	"github.com/halemdm/hale/api"
)

// IT issues a binding token for a device and lists its app instances; the auditor may list but
// not issue; a bad ttl is the server's 400.
func TestAppBindingAndInstances(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))
	id := e.enrollAgent("dr.grey", "icu", &lockRunner{})

	out := it.ok(t, "devices", "app-binding", id, "--ttl", "2h").stdout
	if !strings.Contains(out, "binding token for "+id) || !strings.Contains(out, "\nhab_") {
		t.Fatalf("app-binding:\n%s", out)
	}
	var b api.AppBindingAnswer
	it.okJSON(t, &b, "devices", "app-binding", id)
	if !strings.HasPrefix(b.Token, "hab_") || b.DeviceID != id {
		t.Fatalf("app-binding -o json: %+v", b)
	}
	if r := it.fails(t, 2, "devices", "app-binding", id, "--ttl", "forever"); !strings.Contains(r.stderr, "ttl") {
		t.Fatalf("bad ttl: %s", r.stderr)
	}
	auditor := e.as(e.token("auditor"))
	auditor.fails(t, 3, "devices", "app-binding", id)
	if out := auditor.ok(t, "devices", "app-instances", id).stdout; !strings.HasPrefix(out, "INSTANCE") {
		t.Fatalf("app-instances:\n%s", out)
	}
}
