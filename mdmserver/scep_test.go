package mdmserver_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// appleSCEPPayload fetches a new Apple enrollment's profile and returns its SCEP payload, with
// a client that trusts the server.
func (env *testEnv) appleSCEPPayload() (*applesim.SCEPPayload, *http.Client) {
	env.t.Helper()
	e := env.createEnrollment("apple")
	resp, profile := env.get(env.URL + strings.TrimPrefix(e.ProfileURL, env.PublicURL))
	if resp.StatusCode != http.StatusOK {
		env.t.Fatalf("profile: %d %s", resp.StatusCode, profile)
	}
	ep, err := applesim.ParseEnrollmentProfile(profile)
	if err != nil || ep.SCEP == nil {
		env.t.Fatalf("enrollment profile: %v", err)
	}
	client := env.DeviceClient()
	return ep.SCEP, client
}

// A SCEP request whose CSR the CA refuses (it names another subject than the profile's device)
// leaves the one-time challenge unspent; the challenge is spent only when a certificate is
// issued, and two concurrent requests with it get one certificate between them.
func TestSCEPRefusedCSRKeepsChallenge(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	payload, client := env.appleSCEPPayload()
	ctx := context.Background()

	wrong := *payload
	wrong.Subject = [][2]string{{"CN", "d_someone_else"}, {"O", "Hale"}}
	if _, _, err := applesim.SCEPEnroll(ctx, client, &wrong); !errors.Is(err, applesim.ErrSCEPFailed) {
		t.Fatalf("CSR for another subject: %v, want a SCEP failure", err)
	}
	var list struct{ Devices []inventory.Device }
	env.call("GET", "/api/v1/devices", env.Admin, nil, &list)
	if len(list.Devices) != 0 {
		t.Fatalf("a refused SCEP request created devices: %+v", list.Devices)
	}

	// Two devices race with the same, still unspent challenge: exactly one gets a certificate.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		issued []*x509.Certificate
		errs   []error
	)
	for range 2 {
		wg.Go(func() {
			cert, _, err := applesim.SCEPEnroll(ctx, client, payload)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				issued = append(issued, cert)
			}
		})
	}
	wg.Wait()
	if len(issued) != 1 {
		t.Fatalf("%d certificates for one challenge (errors %v), want 1", len(issued), errs)
	}
	if !errors.Is(errs[0], applesim.ErrSCEPFailed) {
		t.Fatalf("the losing request: %v, want a SCEP failure", errs[0])
	}
	var deviceID string
	for _, rdn := range payload.Subject {
		if rdn[0] == "CN" {
			deviceID = rdn[1]
		}
	}
	if issued[0].Subject.CommonName != deviceID {
		t.Fatalf("issued for %q, want the profile's device %q", issued[0].Subject.CommonName, deviceID)
	}
	// Spent now: a third request is refused.
	if _, _, err := applesim.SCEPEnroll(ctx, client, payload); !errors.Is(err, applesim.ErrSCEPFailed) {
		t.Fatalf("a spent challenge was accepted: %v", err)
	}
	env.call("GET", "/api/v1/devices", env.Admin, nil, &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != deviceID || list.Devices[0].Platform != inventory.PlatformApple {
		t.Fatalf("inventory after issuance: %+v", list.Devices)
	}
	// The refusals were counted, not audited one by one; the issuance was audited.
	m := apitest.Metrics(t, env.Client, env.URL+"/metrics")
	if got := m[`hale_enroll_refusals_total{endpoint="scep",reason="csr_refused"}`]; got != 1 {
		t.Errorf("csr_refused = %v, want 1", got)
	}
	if got := m[`hale_enroll_refusals_total{endpoint="scep",reason="in_use"}`] + m[`hale_enroll_refusals_total{endpoint="scep",reason="used"}`]; got != 2 {
		t.Errorf("in_use + used = %v, want 2 (the race's loser and the third request)", got)
	}
	var scepAudit struct{ Entries []audit.Entry }
	env.call("GET", "/api/v1/audit?action=enrollment.scep", env.Admin, nil, &scepAudit)
	if len(scepAudit.Entries) != 1 || scepAudit.Entries[0].Outcome != audit.OutcomeOK || scepAudit.Entries[0].Target != deviceID ||
		scepAudit.Entries[0].Details["serial"] != inventory.SerialHex(issued[0].SerialNumber) {
		t.Errorf("enrollment.scep entries: %+v", scepAudit.Entries)
	}
	// The loser never got a certificate signed: nothing had to be revoked.
	_, crlDER := env.get(env.URL + "/ca/crl")
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("CRL: %v, %d revoked", err, len(crl.RevokedCertificateEntries))
	}
}
