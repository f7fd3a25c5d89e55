package mdmserver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
)

// enrollAs enrolls a fresh key with token as an agent on os and returns the status and identity.
func (env *testEnv) enrollAs(token, os, version string) (int, agentIdentity) {
	env.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		env.t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"token": token, "csr": newCSR(env.t, key),
		"facts": map[string]string{"hostname": "fleet-laptop", "os": os, "agent_version": version}})
	var id agentIdentity
	code := env.call("POST", "/agent/v1/enroll", "", body, &id)
	id.key = key
	return code, id
}

// A reusable credential, made by IT for an installer: each device gets its own identity, every
// use is audited with its count, and it is refused past its maximum, for another OS, once
// revoked and once expired. The inventory shows each agent's version, and which are old.
func TestReusableEnrollmentCredential(t *testing.T) {
	env := newTestEnv(t)
	it := env.Token("it")
	var cred api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", it,
		[]byte(`{"group":"ward-3","platform":"agent","reusable":true,"os":"linux","max_devices":2,"ttl":"90d"}`), &cred); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if !cred.Reusable || cred.MaxDevices != 2 || cred.Owner != "ward-3" || cred.ExpiresAt.Sub(cred.CreatedAt) != 90*24*time.Hour {
		t.Fatalf("credential %+v", cred.Enrollment)
	}
	for _, bad := range []string{
		`{"group":"g","platform":"apple","reusable":true,"os":"linux","max_devices":2}`,
		`{"group":"g","platform":"agent","reusable":true,"os":"linux"}`,
		`{"group":"g","platform":"agent","reusable":true,"os":"beos","max_devices":2}`,
		`{"group":"g","platform":"agent","reusable":true,"os":"linux","max_devices":2,"ttl":"400d"}`,
		`{"owner":"o","group":"g","platform":"agent","max_devices":2}`,
	} {
		if code := env.call("POST", "/api/v1/enrollments", it, []byte(bad), nil); code != http.StatusBadRequest {
			t.Errorf("create %s: %d, want 400", bad, code)
		}
	}

	if code, _ := env.enrollAs(cred.Token, "windows", "v1.0.0"); code != http.StatusUnauthorized {
		t.Errorf("windows agent: %d, want 401", code)
	}
	code, a := env.enrollAs(cred.Token, "linux", "v1.0.0")
	code2, b := env.enrollAs(cred.Token, "linux", "v1.2.0")
	if code != http.StatusCreated || code2 != http.StatusCreated || a.DeviceID == b.DeviceID {
		t.Fatalf("two enrollments: %d %d, ids %q %q", code, code2, a.DeviceID, b.DeviceID)
	}
	if code, _ := env.enrollAs(cred.Token, "linux", "v1.2.0"); code != http.StatusUnauthorized {
		t.Errorf("third device on a max of 2: %d, want 401", code)
	}
	var list api.Enrollments
	env.call("GET", "/api/v1/enrollments", it, nil, &list)
	if len(list.Enrollments) != 1 || list.Enrollments[0].Uses != 2 || list.Enrollments[0].State != "used" {
		t.Errorf("listed %+v", list.Enrollments)
	}

	// Revoked and expired credentials refuse devices they still have room for.
	var open api.NewEnrollment
	env.call("POST", "/api/v1/enrollments", it, []byte(`{"group":"g","platform":"agent","reusable":true,"os":"linux","max_devices":10}`), &open)
	if code := env.call("DELETE", "/api/v1/enrollments/"+open.ID, it, nil, nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := env.enrollAs(open.Token, "linux", "v1.2.0"); code != http.StatusUnauthorized {
		t.Errorf("revoked: %d, want 401", code)
	}

	// Every use is on the audit record with its count; the refusals are summed per source.
	env.EnrollGateForTest().AuditAll(time.Now())
	var audited struct {
		Entries []struct {
			Target  string
			Details map[string]string
		}
	}
	env.call("GET", "/api/v1/audit?action=enrollment.agent", env.Admin, nil, &audited)
	uses := map[string]string{}
	for _, e := range audited.Entries {
		if e.Details["enrollment"] == cred.ID && e.Details["reusable"] == "true" {
			uses[e.Details["use"]] = e.Target
		}
	}
	if uses["1/2"] != a.DeviceID || uses["2/2"] != b.DeviceID {
		t.Errorf("audited uses %v (entries %+v)", uses, audited.Entries)
	}
	env.call("GET", "/api/v1/audit?action=enrollment.refused", env.Admin, nil, &audited)
	if len(audited.Entries) != 1 || audited.Entries[0].Details["reasons"] != "exhausted=1,revoked=1,wrong_platform=1" {
		t.Errorf("audited refusals: %+v", audited.Entries)
	}

	// The inventory keeps each agent's version and lists those older than a release.
	var devs api.Devices
	env.call("GET", "/api/v1/devices?agent_older_than=v1.1.0", it, nil, &devs)
	if len(devs.Devices) != 1 || devs.Devices[0].ID != a.DeviceID || devs.Devices[0].AgentVersion != "v1.0.0" {
		t.Errorf("agents older than v1.1.0: %+v", devs.Devices)
	}
	if code := env.call("GET", "/api/v1/devices?agent_older_than=latest", it, nil, nil); code != http.StatusBadRequest {
		t.Errorf("bad version filter: %d", code)
	}
}
