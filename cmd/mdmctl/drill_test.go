package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readDrill reads the one drill report of device in dir, checking both files exist.
func readDrill(t *testing.T, dir, device string) (drillReport, string) {
	t.Helper()
	jsons, _ := filepath.Glob(filepath.Join(dir, "drill-"+device+"-*.json"))
	mds, _ := filepath.Glob(filepath.Join(dir, "drill-"+device+"-*.md"))
	if len(jsons) != 1 || len(mds) != 1 {
		t.Fatalf("drill reports for %s in %s: %v %v", device, dir, jsons, mds)
	}
	var rep drillReport
	b, err := os.ReadFile(jsons[0])
	if err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("drill JSON report: %v %s", err, b)
	}
	md, err := os.ReadFile(mds[0])
	if err != nil {
		t.Fatal(err)
	}
	return rep, string(md)
}

func TestDrill(t *testing.T) {
	e := newEnv(t)
	security := e.as(e.token("security"))
	_, certFile, keyFile := e.pushCertFiles()
	e.as(e.admin).ok(t, "pushcert", "upload", "--cert", certFile, "--key", keyFile)
	e.as(e.admin).ok(t, "events", "create", "--audience", "messaging") // the backend to tell

	t.Run("agent passes", func(t *testing.T) {
		id := e.enrollAgent("drill.agent", "test-devices", &lockRunner{})
		e.waitDecided(t, id)
		dir := t.TempDir()
		r := security.ok(t, "drill", id, "--report-dir", dir, "--key", e.auditKeyPath(), "--timeout", "20s")
		if !strings.Contains(r.stdout, "drill PASSED") {
			t.Fatalf("drill output: %s", r.stdout)
		}
		rep, md := readDrill(t, dir, id)
		if !rep.Passed || !rep.KeyPinned || len(rep.Steps) != 5 || rep.CommandID == "" || !slices.Contains(rep.AccessReasons, "device_locked") {
			t.Fatalf("report: %+v", rep)
		}
		for _, s := range rep.Steps {
			if s.Result != stepPass || s.Start.IsZero() || s.End.Before(s.Start) {
				t.Errorf("step %s: %+v", s.Name, s)
			}
		}
		proof := rep.Steps[4]
		var actions []string
		for _, ev := range proof.Evidence {
			if !ev.Proved || ev.Index < rep.AuditStart {
				t.Errorf("evidence %+v (audit start %d)", ev, rep.AuditStart)
			}
			actions = append(actions, ev.Action)
		}
		for _, want := range []string{"device.lock", "command.result", "access.revoked"} {
			if !slices.Contains(actions, want) {
				t.Errorf("evidence lacks %s: %v", want, actions)
			}
		}
		if len(rep.Steps[0].Evidence) != 1 || rep.Steps[0].Evidence[0].Action != "device.lock" {
			t.Errorf("lock step evidence: %+v", rep.Steps[0].Evidence)
		}
		for _, want := range []string{"Result: **PASS**", "| 1 | Lock the device | PASS |", "device.lock", "access.revoked", "pinned (given with --key)"} {
			if !strings.Contains(md, want) {
				t.Errorf("markdown lacks %q:\n%s", want, md)
			}
		}
	})

	t.Run("apple without a pinned key", func(t *testing.T) {
		dev := e.appleDevice()
		e.waitDecided(t, dev.UDID())
		dir := t.TempDir()
		r := security.ok(t, "drill", dev.UDID(), "--report-dir", dir, "--timeout", "20s")
		if !strings.Contains(r.stdout, "checkpoint key not pinned") {
			t.Errorf("unpinned key not said: %s", r.stdout)
		}
		rep, md := readDrill(t, dir, dev.UDID())
		if !rep.Passed || rep.KeyPinned || rep.Platform != "apple" || rep.DeviceID == "" {
			t.Fatalf("report: %+v", rep)
		}
		if !strings.Contains(md, "**not pinned**") {
			t.Errorf("markdown does not say the key was not pinned:\n%s", md)
		}
	})

	t.Run("a failed lock fails the drill and is reported", func(t *testing.T) {
		id := e.enrollAgent("drill.broken", "test-devices", &lockRunner{err: errors.New("loginctl: no session")})
		e.waitDecided(t, id)
		dir := t.TempDir()
		r := security.fails(t, exitVerify, "drill", id, "--report-dir", dir, "--key", e.auditKeyPath(), "--timeout", "20s")
		if !strings.Contains(r.stderr, "step acknowledged") {
			t.Errorf("failure not named: %s", r.stderr)
		}
		rep, md := readDrill(t, dir, id)
		if rep.Passed || rep.Steps[1].Result != stepFail || !strings.Contains(rep.Steps[1].Detail, "error") {
			t.Fatalf("report: %+v", rep.Steps[1])
		}
		// The rest still ran: the device is denied all the same.
		if rep.Steps[2].Result != stepPass || rep.Steps[3].Result != stepPass {
			t.Errorf("later steps: %+v %+v", rep.Steps[2], rep.Steps[3])
		}
		if !strings.Contains(md, "Result: **FAIL**") {
			t.Errorf("markdown: %s", md)
		}
	})

	t.Run("a device already locked is refused at once", func(t *testing.T) {
		id := e.enrollAgent("drill.locked", "test-devices", &lockRunner{})
		security.ok(t, "lock", id, "--reason", "already")
		dir := t.TempDir()
		r := security.fails(t, exitVerify, "drill", id, "--report-dir", dir, "--timeout", "20s")
		if !strings.Contains(r.stderr, "is locked: run the drill on an active test device") {
			t.Errorf("refusal: %s", r.stderr)
		}
	})

	t.Run("a device never evaluated is refused at once", func(t *testing.T) {
		_, id := e.enrollOnly("drill.silent", "test-devices")
		r := security.fails(t, exitVerify, "drill", id, "--report-dir", t.TempDir(), "--timeout", "20s")
		if !strings.Contains(r.stderr, "no decision for device") {
			t.Errorf("refusal: %s", r.stderr)
		}
	})

	t.Run("an unknown device fails at the lock; the report is written", func(t *testing.T) {
		dir := t.TempDir()
		security.fails(t, exitVerify, "drill", "d_nosuch", "--report-dir", dir, "--timeout", "5s")
		rep, _ := readDrill(t, dir, "d_nosuch")
		if rep.Passed || rep.Steps[0].Result != stepFail || rep.Steps[4].Result != stepSkipped {
			t.Fatalf("report: %+v", rep.Steps)
		}
	})

	e.as(e.token("auditor")).fails(t, exitUsage, "drill", "x", "--timeout", "0s")
}

// With no event stream, a revocation reaches no backend: the drill says so and fails.
func TestDrillWithoutEventStream(t *testing.T) {
	e := newEnv(t)
	id := e.enrollAgent("drill.alone", "test-devices", &lockRunner{})
	e.waitDecided(t, id)
	r := e.as(e.token("security")).fails(t, exitVerify, "drill", id, "--report-dir", t.TempDir(), "--timeout", "20s")
	if !strings.Contains(r.stderr, "no event stream") {
		t.Fatalf("drill without a stream: %s", r.stderr)
	}
}
