package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/agent/service"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersionAndPosture(t *testing.T) {
	out, err := execute(t, "version")
	if err != nil || !strings.HasPrefix(out, "mdmagent ") {
		t.Fatalf("version: %q %v", out, err)
	}
	out, err = execute(t, "posture", "--root", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Posture struct {
			Platform string `json:"platform"`
		} `json:"posture"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Posture.Platform == "" {
		t.Fatalf("posture json: %v\n%s", err, out)
	}
	out, err = execute(t, "posture", "--root", t.TempDir(), "-o", "table")
	if err != nil || !strings.Contains(out, "CLAIM") || !strings.Contains(out, "PLATFORM") {
		t.Fatalf("posture table: %v\n%s", err, out)
	}
	if _, err := execute(t, "posture", "-o", "yaml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestRunNotEnrolledExits78(t *testing.T) {
	_, err := execute(t, "run", "--state-dir", filepath.Join(t.TempDir(), "st"))
	var ee exitError
	if !errors.As(err, &ee) || ee.code != service.ExitNotEnrolled {
		t.Fatalf("run on an unenrolled device: %v, want exit %d", err, service.ExitNotEnrolled)
	}
}

func TestEnrollFlags(t *testing.T) {
	if _, err := execute(t, "enroll", "--state-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("enroll without flags: %v", err)
	}
	_, err := execute(t, "enroll", "--state-dir", t.TempDir(), "--server", "https://127.0.0.1:1", "--token", "t", "--ca-fingerprint", "zz")
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("bad fingerprint: %v", err)
	}
}

func TestStatus(t *testing.T) {
	out, err := execute(t, "status", "--state-dir", t.TempDir(), "--service-name", "hale-agent-absent-test")
	if err != nil || !strings.Contains(out, "not enrolled") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
