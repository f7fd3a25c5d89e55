package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/internal/servertest"
)

// TestMigrateCommand runs `mdmserver migrate` on the data directory a stopped server left, then
// again on the same database, which it refuses.
func TestMigrateCommand(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	srv := servertest.Start(t)
	srv.Stop()
	run := func(args ...string) (string, error) {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"migrate"}, args...))
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("--from", srv.Config.DataDir); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("without --to: %v", err)
	}
	out, err := run("--from", srv.Config.DataDir, "--to", dsn)
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, want := range []string{"api_tokens=", "audit log verified", "next: start mdmserver --data " + srv.Config.DataDir} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run("--from", srv.Config.DataDir, "--to", dsn); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("into the same database again: %v", err)
	}
}
