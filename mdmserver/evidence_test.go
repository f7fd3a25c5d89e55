package mdmserver_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
)

// The coverage report counts a checked-in iPhone as the access API sees it, and the
// configuration an auditor reads has its secrets redacted.
func TestCoverageReportAndRedactedConfig(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	it, auditor, accessTok := env.token("it"), env.token("auditor"), env.token("access")
	if code := env.call("PUT", "/api/v1/policies/enc", it, []byte("encryption:\n  required: true\npasscode:\n  required: true\n"), nil); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	env.assignDefault(it, "enc")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))
	env.waitAccess(accessTok, id, "compliant", func(a access.Answer) bool { return a.Allow && a.Compliant })

	var rep api.CoverageReport
	env.Call("GET", "/api/v1/reports/coverage", auditor, nil, http.StatusOK, &rep)
	if len(rep.Rows) != 1 || rep.Rows[0].Platform != "ios" || rep.Total.Devices != 1 {
		t.Fatalf("coverage rows %+v", rep.Rows)
	}
	a := env.access(accessTok, id)
	row := rep.Rows[0]
	if row.Encrypted != 1 || row.Passcode != 1 || row.Denied != 0 || !a.Allow {
		t.Fatalf("coverage row %+v for a device the access API answers allow=%v", row, a.Allow)
	}

	var cfg map[string]any
	env.Call("GET", "/api/v1/config", auditor, nil, http.StatusOK, &cfg)
	if cfg["master_key"] != "" || cfg["listen"] != env.Config.Listen || cfg["posture_token_ttl"] != "5m0s" {
		t.Fatalf("config: master key %v, listen %v, posture_token_ttl %v", cfg["master_key"], cfg["listen"], cfg["posture_token_ttl"])
	}
	secret := mdmserver.Defaults()
	secret.MasterKey, secret.AppAndroidDecryptKey, secret.AppAndroidVerifyKey = "k1", "k2", "k3"
	for _, k := range []string{"master_key", "app_android_decryption_key", "app_android_verification_key"} {
		if v := secret.Redacted()[k]; v != "[redacted]" {
			t.Errorf("Redacted()[%s] = %v", k, v)
		}
	}
	if code := env.Do("GET", "/api/v1/config", it, nil, nil); code != http.StatusForbidden {
		t.Fatalf("IT reading the configuration: %d, want 403", code)
	}
	for _, bad := range []string{`{"files":[]}`, `{"files":[{"name":"../x","sha256":"` + sha64 + `","size":1}]}`,
		`{"files":[{"name":"a","sha256":"XYZ","size":1}]}`} {
		if code := env.Do("POST", "/api/v1/evidence/manifest", auditor, []byte(bad), nil); code != http.StatusBadRequest {
			t.Errorf("manifest %s: %d, want 400", bad, code)
		}
	}
}

const sha64 = "0000000000000000000000000000000000000000000000000000000000000000"
