package ddm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"

	"github.com/halemdm/hale/internal/ddmschema"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

type fakes struct {
	dev     *inventory.Device
	policy  *compliance.StoredPolicy
	posture *policies.Posture
	audited []audit.Entry
}

func (f *fakes) Get(_ context.Context, id string) (*inventory.Device, error) {
	if id != f.dev.ID {
		return nil, errors.New("not found")
	}
	return f.dev, nil
}
func (f *fakes) GetByEnrollmentID(_ context.Context, eid string) (*inventory.Device, error) {
	if eid != f.dev.EnrollmentID {
		return nil, errors.New("not found")
	}
	return f.dev, nil
}
func (f *fakes) Effective(*inventory.Device) (*compliance.StoredPolicy, error) { return f.policy, nil }
func (f *fakes) IngestAppleResult(_ context.Context, _ string, update func(*policies.Posture)) (policies.Verdict, error) {
	p := &policies.Posture{}
	if f.posture != nil {
		c := *f.posture
		p = &c
	}
	update(p)
	f.posture = p
	return policies.Verdict{}, nil
}
func (f *fakes) Verdict(string) (policies.Verdict, *policies.Posture, bool) {
	return policies.Verdict{}, f.posture, f.posture != nil
}
func (f *fakes) Append(_ context.Context, e audit.Entry) (int64, error) {
	f.audited = append(f.audited, e)
	return int64(len(f.audited)), nil
}

type nopSigner struct{}

func (nopSigner) Sign(b []byte) ([]byte, error) { return b, nil }

func newService(t *testing.T) (*Service, *fakes) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies", "hipaa-texting.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	p.Name, p.Version = "hipaa", 1
	f := &fakes{dev: &inventory.Device{ID: "d_1", EnrollmentID: "E1", Platform: inventory.PlatformApple, OS: "ios", State: inventory.StateActive},
		policy: &compliance.StoredPolicy{Name: "hipaa", Version: 1, Policy: p, UpdatedAt: time.Unix(1700000000, 0)}}
	s, err := New(Deps{Devices: f, Policies: f, Posture: f, Audit: f, Signer: nopSigner{},
		ProfileOptions: func() policies.RenderOptions { return policies.RenderOptions{} },
		PublicURL:      "https://mdm.example.org", URLKey: make([]byte, 32)}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

func dm(t *testing.T, s *Service, endpoint string, data []byte) ([]byte, error) {
	t.Helper()
	r := mdm.NewRequestWithContext(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{ID: "E1"}
	return s.DeclarativeManagement(r, &mdm.DeclarativeManagement{Endpoint: endpoint, Data: data})
}

// The protocol answers validate against Apple's schema, and every declaration the manifest lists
// can be fetched; its profile URL serves the profile, and a forged one does not.
func TestProtocolMatchesSchema(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "apple-device-management")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("Apple's schema is not at %s", dir)
	}
	schema, err := ddmschema.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newService(t)
	for _, ep := range []struct{ endpoint, msg string }{{"tokens", "TokensResponse"}, {"declaration-items", "DeclarationItemsResponse"}} {
		b, err := dm(t, s, ep.endpoint, nil)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, err := range schema.ValidateProtocol(ep.msg, m) {
			t.Errorf("%s: %v", ep.endpoint, err)
		}
	}
	b, _ := dm(t, s, "declaration-items", nil)
	var items struct {
		Declarations map[string][]manifestItem
	}
	_ = json.Unmarshal(b, &items)
	n := 0
	for cat, list := range items.Declarations {
		for _, it := range list {
			n++
			c := map[string]string{"Activations": "activation", "Configurations": "configuration"}[cat]
			raw, err := dm(t, s, "declaration/"+c+"/"+it.Identifier, nil)
			if err != nil {
				t.Fatalf("%s: %v", it.Identifier, err)
			}
			var d map[string]any
			_ = json.Unmarshal(raw, &d)
			for _, err := range schema.ValidateDeclaration(d, ddmschema.Platform{OS: "iOS", Version: "17.0"}) {
				t.Errorf("%s: %v", it.Identifier, err)
			}
			if d["Type"] == policies.DeclarationTypeLegacy {
				u := d["Payload"].(map[string]any)["ProfileURL"].(string)
				if code := serve(s, u); code != 200 {
					t.Errorf("GET %s: %d", u, code)
				}
				forged := u[:len(u)-1] + "0"
				if u[len(u)-1] == '0' {
					forged = u[:len(u)-1] + "1"
				}
				if code := serve(s, forged); code != 404 {
					t.Errorf("forged MAC: %d", code)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d declarations", n)
	}
	if _, err := dm(t, s, "declaration/configuration/io.github.halemdm.ddm.other.passcode", nil); err == nil {
		t.Error("a declaration the device does not have was served")
	}
}

func serve(s *Service, u string) int {
	req := httptest.NewRequest("GET", u, nil)
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	mux.HandleFunc(ProfilePath, s.ServeProfile)
	mux.ServeHTTP(rec, req)
	return rec.Code
}

// A status report becomes posture claims of provenance mdm; a declaration newly failed is
// audited once.
func TestStatusIntoPosture(t *testing.T) {
	s, f := newService(t)
	report := `{"StatusItems":{"passcode":{"is-compliant":false,"is-present":true},
	"device":{"operating-system":{"version":"17.5.1","build-version":"21F90"}},
	"softwareupdate":{"install-state":"downloading","pending-version":{"os-version":"17.6.1","build-version":"21G93"}},
	"management":{"declarations":{"activations":[],"assets":[],"management":[],"configurations":[
	{"identifier":"io.github.halemdm.ddm.hipaa.passcode","server-token":"t1","active":false,"valid":"invalid","reasons":[{"code":"Error.ConfigurationCannotBeApplied"}]}]}}},
	"Errors":[]}`
	for range 2 {
		if _, err := dm(t, s, "status", []byte(report)); err != nil {
			t.Fatal(err)
		}
	}
	p := f.posture
	if p.PasscodeCompliant == nil || p.PasscodeCompliant.Value || p.PasscodeCompliant.Source != policies.ProvenanceMDM ||
		p.PasscodePresent == nil || !p.DiskEncrypted.Value || p.OS.Value.Version != "17.5.1" || p.OS.Value.Build != "21F90" ||
		len(p.Declarations.Value) != 1 || !p.Declarations.Value[0].Failed() ||
		p.OSUpdate == nil || p.OSUpdate.Value != (policies.OSUpdateStatus{InstallState: "downloading", PendingVersion: "17.6.1", PendingBuild: "21G93"}) {
		t.Fatalf("posture %+v", p)
	}
	if len(f.audited) != 1 || f.audited[0].Action != "declaration.failed" {
		t.Fatalf("audited %+v", f.audited)
	}
	for _, bad := range []string{``, `{}`, `[]`, `{"StatusItems":{"management":{"declarations":{"configurations":[{"identifier":"x"}]}}}}`} {
		if _, err := dm(t, s, "status", []byte(bad)); err == nil {
			t.Errorf("status %q accepted", bad)
		}
	}
}

// FuzzStatusReport: no status report crashes the server or yields a claim of another type.
func FuzzStatusReport(f *testing.F) {
	f.Add([]byte(`{"StatusItems":{"passcode":{"is-compliant":true}},"Errors":[]}`))
	f.Add([]byte(`{"StatusItems":{"device":{"operating-system":{"version":"99999999999999999999.1"}}}}`))
	f.Add([]byte(`{"StatusItems":{"management":{"declarations":{"configurations":[{"identifier":"a","server-token":"b","active":true,"valid":"valid"}]}}}}`))
	f.Add([]byte(`{"StatusItems":{"passcode":"x","device":[1]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := newService(t)
		_, _ = dm(t, s, "status", data)
	})
}
