package main

import (
	"slices"
	"testing"

	"github.com/spf13/cobra"
)

// What `install` is given for the local endpoint reaches the service's `run` command line,
// where `run` parses it back to the same configuration.
func TestLocalFlagsRoundTrip(t *testing.T) {
	var in localFlags
	c := &cobra.Command{Use: "install", RunE: func(*cobra.Command, []string) error { return nil }}
	in.add(c)
	c.SetArgs([]string{"--app-allow", "/opt/chat/chat", "--app-allow", "/opt/chat/helper", "--app-user", "alice",
		"--app-require-signature", "--local-socket", "/run/x/agent.sock"})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	var out localFlags
	r := &cobra.Command{Use: "run", RunE: func(*cobra.Command, []string) error { return nil }}
	out.add(r)
	r.SetArgs(in.args())
	if err := r.Execute(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.apps, in.apps) || !slices.Equal(out.users, in.users) || out.address != in.address || !out.signed {
		t.Fatalf("run got %+v from %q", out, in.args())
	}
	if got := (&localFlags{}).args(); len(got) != 0 {
		t.Fatalf("no endpoint configured, yet args %q", got)
	}
}
