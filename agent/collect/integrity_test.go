//go:build unix

package collect

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAgentIntegrity(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, conf, state := filepath.Join(dir, "mdmagent"), filepath.Join(dir, "agent.yaml"), filepath.Join(dir, "state")
	for _, f := range []string{bin, conf} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0 // files the test creates are root's only when it runs as root
	env := (&Env{AgentBinary: bin, AgentConfig: conf, StateDir: state, Now: func() time.Time { return fixedNow }}).withDefaults()
	check := func(name string, tampered, jailbroken bool) {
		t.Helper()
		p, err := collectAgentIntegrity(context.Background(), env)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.AgentTampered == nil || p.AgentTampered.Value != tampered || p.Jailbroken == nil || p.Jailbroken.Value != jailbroken {
			t.Errorf("%s: tampered %+v jailbroken %+v; want %v %v", name, p.AgentTampered, p.Jailbroken, tampered, jailbroken)
		}
	}
	check("private files", !root, !root)
	if err := os.Chmod(conf, 0o666); err != nil {
		t.Fatal(err)
	}
	check("world-writable config", true, !root)
	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	check("world-writable directory", true, !root)
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	check("sticky directory", !root, !root)
	if err := os.Chmod(state, 0o770); err != nil {
		t.Fatal(err)
	}
	check("group-writable state", !root, true)

	env.AgentBinary = filepath.Join(dir, "missing")
	env.AgentConfig = ""
	p, err := collectAgentIntegrity(context.Background(), env)
	if root && (err == nil || p.AgentTampered != nil) {
		t.Errorf("missing binary: %+v, %v; want unknown and an error", p.AgentTampered, err)
	}
	if !root && (p.AgentTampered == nil || !p.AgentTampered.Value) {
		// Its directory is not root's, so it is replaceable whatever the missing file.
		t.Errorf("missing binary in a user's directory: %+v, %v", p.AgentTampered, err)
	}
}
