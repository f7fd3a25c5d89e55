package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/halemdm/hale/policies"
)

// apply and dry-run print a policy's unobservable rules under a warning, and still apply it;
// -o json carries them with the reason; a policy every source can observe prints no warning.
func TestPolicyUnobservableRules(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))
	strict := filepath.Join(e.dir, "strict.yaml")
	if err := os.WriteFile(strict, []byte("integrity:\n  block_jailbroken: true\n  jailbreak_evidence: required\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := it.ok(t, "policy", "apply", "strict", strict)
	if !strings.Contains(r.stdout, "version 1") || !strings.Contains(r.stdout, "WARNING: 1 rule of this policy cannot") {
		t.Fatalf("apply: %s", r.stdout)
	}
	var row string
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "integrity.block_jailbroken") {
			row = strings.Join(strings.Fields(line), " ")
		}
	}
	if row != "integrity.block_jailbroken apple ios,ipados,macos jailbroken" {
		t.Fatalf("apply's table row %q in\n%s", row, r.stdout)
	}

	var ans struct {
		Version      int
		Unobservable []policies.UnobservableRule
	}
	it.okJSON(t, &ans, "policy", "apply", "strict", strict)
	if len(ans.Unobservable) != 1 || !slices.Equal(ans.Unobservable[0].Platforms, []policies.Platform{"ios", "ipados", "macos"}) ||
		!strings.Contains(ans.Unobservable[0].Why, "no source Hale has") {
		t.Fatalf("apply -o json: %+v", ans)
	}

	r = it.ok(t, "policy", "dry-run", "strict")
	if !strings.Contains(r.stdout, "no device would be noncompliant") || !strings.Contains(r.stdout, "integrity.block_jailbroken") {
		t.Fatalf("dry-run: %s", r.stdout)
	}

	observable := filepath.Join(e.dir, "observable.yaml")
	if err := os.WriteFile(observable, []byte("integrity:\n  block_jailbroken: true\nos:\n  ios: \"17.4\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"policy", "apply", "observable", observable}, {"policy", "dry-run", "observable"}} {
		if r := it.ok(t, args...); strings.Contains(r.stdout, "WARNING") {
			t.Errorf("%v warns about an observable policy: %s", args, r.stdout)
		}
	}
}
