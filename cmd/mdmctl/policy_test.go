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

// apply and dry-run note the data_sharing rules no device control enforces on some platforms,
// and dry-run the settings that undo each other; a policy without them notes nothing.
func TestPolicyNotEnforcedRules(t *testing.T) {
	e := newEnv(t)
	it := e.as(e.token("it"))
	file := filepath.Join(e.dir, "sharing.yaml")
	if err := os.WriteFile(file, []byte("data_sharing:\n  airdrop: blocked\n  managed_open_in: false\n  third_party_keyboards: blocked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := it.ok(t, "policy", "apply", "sharing", file)
	rows := map[string]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "data_sharing.") {
			rows[f[0]] = f[1]
		}
	}
	// (AirDrop blocked on a Mac is a profile, which an agent-enrolled Mac cannot show: that part
	// is unobservable, under the WARNING, as for every Apple restriction.)
	if !strings.Contains(r.stdout, "NOTE: no device control enforces") ||
		rows["data_sharing.airdrop"] != "windows,linux,android" || rows["data_sharing.third_party_keyboards"] != "ios,ipados,macos,windows,linux" {
		t.Fatalf("apply: rows %v in\n%s", rows, r.stdout)
	}
	r = it.ok(t, "policy", "dry-run", "sharing")
	if !strings.Contains(r.stdout, "NOTE: data_sharing.airdrop is blocked while data_sharing.managed_open_in is false") {
		t.Fatalf("dry-run names no conflict:\n%s", r.stdout)
	}
	plain := filepath.Join(e.dir, "plain.yaml")
	if err := os.WriteFile(plain, []byte("encryption:\n  required: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"policy", "apply", "plain", plain}, {"policy", "dry-run", "plain"}} {
		if r := it.ok(t, args...); strings.Contains(r.stdout, "NOTE") {
			t.Errorf("%v notes something about a policy without data_sharing: %s", args, r.stdout)
		}
	}
}
