package mdmserver_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/policies"
)

// textingPolicy is a HIPAA texting policy for Apple devices with a grace period short enough to
// watch it end in a test.
const textingPolicy = `
passcode:
  required: true
  min_length: 6
encryption:
  required: true
screenshots:
  allowed: false
backup:
  cloud_backup_allowed: false
os:
  ios: "17.0"
reporting:
  max_age: 15m
grace: 3s
`

func (env *testEnv) access(token, id string) access.Answer {
	env.t.Helper()
	var a access.Answer
	if code := env.call("GET", "/access/v1/devices/"+id, token, nil, &a); code != 200 {
		env.t.Fatalf("access check: %d", code)
	}
	return a
}

// waitAccess polls the access API until cond holds.
func (env *testEnv) waitAccess(token, id string, what string, cond func(access.Answer) bool) access.Answer {
	env.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := env.access(token, id)
		if cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			env.t.Fatalf("access never %s: allow=%v reasons=%v", what, a.Allow, a.ReasonCodes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A simulated iPhone assigned a policy receives the rendered profiles, answers ProfileList and
// SecurityInfo and is compliant; with its passcode removed it is noncompliant with
// passcode_missing, allowed within grace until grace_until, then denied.
func TestApplePolicyComplianceAndGrace(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	it, accessTok := env.token("it"), env.token("access")
	dev := env.newDevice()
	id := dev.UDID()
	var d struct{ ID string }
	env.call("GET", "/api/v1/devices/"+id, env.Admin, nil, &d)

	// Before any policy: fail closed.
	if a := env.access(accessTok, d.ID); a.Allow {
		t.Fatalf("device allowed without a policy: %+v", a)
	}
	var put struct {
		Name    string
		Version int
	}
	if code := env.call("PUT", "/api/v1/policies/texting", it, []byte(textingPolicy), &put); code != 200 || put.Version != 1 {
		t.Fatalf("put policy: %d %+v", code, put)
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"texting"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}
	a := env.waitAccess(accessTok, d.ID, "allowed", func(a access.Answer) bool { return a.Allow && a.Compliant })
	for _, kind := range []string{policies.ProfilePasscode, policies.ProfileRestrictions} {
		if _, ok := dev.State().Profile(policies.ProfileIdentifier("texting", kind)); !ok {
			t.Errorf("profile %s not installed on the device", kind)
		}
	}
	if a.Posture == nil || a.Posture.PasscodePresent == nil || a.Posture.PasscodePresent.Source != policies.ProvenanceMDM {
		t.Errorf("posture lacks mdm provenance: %+v", a.Posture)
	}

	// The passcode is removed; the next SecurityInfo says so.
	dev.SetPasscodePresent(false)
	var rec commands.Record
	env.call("POST", "/api/v1/devices/"+d.ID+"/commands", it, []byte(`{"request_type":"SecurityInfo"}`), &rec)
	a = env.waitAccess(accessTok, d.ID, "in grace", func(a access.Answer) bool { return !a.Compliant })
	if !a.Allow || !a.InGrace || a.GraceUntil.IsZero() || !slices.Contains(a.ReasonCodes(), "passcode_missing") {
		t.Fatalf("within grace: allow=%v in_grace=%v grace_until=%v reasons=%v", a.Allow, a.InGrace, a.GraceUntil, a.ReasonCodes())
	}
	time.Sleep(time.Until(a.GraceUntil) + 50*time.Millisecond)
	a = env.access(accessTok, d.ID)
	if a.Allow || !slices.Contains(a.ReasonCodes(), access.ReasonGraceExpired) || !slices.Contains(a.ReasonCodes(), "passcode_missing") {
		t.Fatalf("past grace: allow=%v reasons=%v", a.Allow, a.ReasonCodes())
	}

	// Dry run of a stricter policy names the device without changing anything.
	var dry struct {
		Noncompliant []struct {
			DeviceID string `json:"device_id"`
		}
	}
	strict := strings.Replace(textingPolicy, `ios: "17.0"`, `ios: "99.0"`, 1)
	if code := env.call("POST", "/api/v1/policies/texting/dry-run", it, []byte(strict), &dry); code != 200 || len(dry.Noncompliant) != 1 {
		t.Fatalf("dry run: %d %+v", code, dry)
	}
	var again struct{ Version int }
	env.call("GET", "/api/v1/policies/texting", it, nil, &again)
	if again.Version != 1 {
		t.Fatalf("dry run stored a version: %d", again.Version)
	}
}

// A policy that does not validate is refused with every problem's field and line; nothing stored.
func TestPolicyValidationErrors(t *testing.T) {
	env := newTestEnv(t)
	it := env.token("it")
	var p problem.Details
	bad := "passcode:\n  required: true\n  min_length: 500\nscreenshots:\n  allowed: maybe\nfrobnicate: 1\n"
	if code := env.call("PUT", "/api/v1/policies/bad", it, []byte(bad), &p); code != http.StatusBadRequest || len(p.Errors) < 3 {
		t.Fatalf("bad policy: %d %+v", code, p)
	}
	for _, e := range p.Errors {
		if e.Field == "" || e.Line == 0 {
			t.Errorf("problem without field or line: %+v", e)
		}
	}
	if code := env.call("GET", "/api/v1/policies/bad", it, nil, nil); code != http.StatusNotFound {
		t.Errorf("invalid policy stored: %d", code)
	}
	if code := env.call("PUT", "/api/v1/policies/huge", it, []byte(strings.Repeat("#", policies.MaxPolicySize+1)), nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge policy: %d", code)
	}
}
