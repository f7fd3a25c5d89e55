package mdmserver_test

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// auditActions returns the actions of the audit entries about target, oldest first.
func (env *testEnv) auditActions(target string) []string {
	env.t.Helper()
	var page struct{ Entries []audit.Entry }
	if code := env.call("GET", "/api/v1/audit?limit=500&target="+target, env.Admin, nil, &page); code != 200 {
		env.t.Fatalf("audit list: %d", code)
	}
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	return actions
}

// Under the two-person rule a full wipe waits for a second security token holder: the
// requester cannot approve it, an IT token cannot, a second security token can, and a decided
// request cannot be decided again. The Mac gets a generated PIN that is sealed at rest and shown
// to the security role only, on the record.
func TestTwoPersonWipeAndSealedPIN(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	env.uploadPushCert()
	dev := env.newDevice(applesim.WithState(applesim.MacOSState()))
	first, second, it, auditor := env.token("security"), env.token("security"), env.token("it"), env.token("auditor")
	wipeURL := "/api/v1/devices/" + dev.UDID() + "/wipe"

	var held securityAnswer
	if code := env.call("POST", wipeURL, first, []byte(`{"reason":"stolen from the ward","mode":"full"}`), &held); code != 202 ||
		held.State != "pending_approval" || held.ApprovalID == "" || held.CommandID != "" {
		t.Fatalf("wipe under the two-person rule: %d %+v", code, held)
	}
	var list struct {
		Approvals []struct{ ID, State, DeviceID string }
	}
	if code := env.call("GET", "/api/v1/approvals?state=pending", auditor, nil, &list); code != 200 ||
		len(list.Approvals) != 1 || list.Approvals[0].ID != held.ApprovalID {
		t.Fatalf("pending approvals: %d %+v", code, list)
	}
	decide := "/api/v1/approvals/" + held.ApprovalID
	if code := env.call("POST", decide, first, []byte(`{"decision":"approve"}`), nil); code != 403 {
		t.Fatalf("requester approving their own wipe: %d, want 403", code)
	}
	if code := env.call("POST", decide, it, []byte(`{"decision":"approve"}`), nil); code != 403 {
		t.Fatalf("IT approving: %d, want 403", code)
	}
	// Nothing was sent: the server holds no EraseDevice for the device yet.
	var cmds struct {
		Commands []struct {
			RequestType string `json:"request_type"`
		}
	}
	env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands", auditor, nil, &cmds)
	if len(cmds.Commands) == 0 || slices.ContainsFunc(cmds.Commands, func(c struct {
		RequestType string `json:"request_type"`
	}) bool {
		return c.RequestType == "EraseDevice"
	}) {
		t.Fatalf("commands before the second approval: %+v", cmds.Commands)
	}

	var approved struct {
		State   string
		Command *securityAnswer
	}
	if code := env.call("POST", decide, second, []byte(`{"decision":"approve","comment":"confirmed with the ward"}`), &approved); code != 200 ||
		approved.State != "approved" || approved.Command == nil || approved.Command.CommandID == "" {
		t.Fatalf("second approver: %d %+v", code, approved)
	}
	if code := env.call("POST", decide, second, []byte(`{"decision":"reject"}`), nil); code != 409 {
		t.Fatalf("deciding a decided request: %d, want 409", code)
	}
	uuid := approved.Command.CommandID
	if rec := env.waitCommand(dev.UDID(), uuid); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice: %+v", rec.Record)
	}

	// The PIN: made by the server, delivered, readable by security only, sealed in the queue.
	var pin struct{ PIN string }
	if code := env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands/"+uuid+"/pin", it, nil, nil); code != 403 {
		t.Fatalf("PIN as IT: %d, want 403", code)
	}
	if code := env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands/"+uuid+"/pin", second, nil, &pin); code != 200 ||
		!security.ValidPIN(pin.PIN) || pin.PIN != dev.State().ErasePIN {
		t.Fatalf("PIN as security: %d %q, device got %q", code, pin.PIN, dev.State().ErasePIN)
	}
	err := env.Store().(*boltstore.Store).DB().View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("mdmq_commands")).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte("<key>")) || bytes.Contains(v, []byte(pin.PIN)) {
				t.Errorf("command %s is stored in plain text", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	var d inventory.Device
	deadline := time.Now().Add(15 * time.Second)
	for env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d); d.State != inventory.StateWiped && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d)
	}
	if d.State != inventory.StateWiped {
		t.Fatalf("device state: %s", d.State)
	}
	got := env.auditActions(d.ID)
	for _, want := range []string{"approval.request", "approval.approve", "device.wipe", "access.revoked", "command.pin_view"} {
		if !slices.Contains(got, want) {
			t.Errorf("audit trail of %s lacks %s: %v", d.ID, want, got)
		}
	}
}

// A valid token refused for its role is on the audit record; the inclusion and consistency
// proofs served over the API verify against signed checkpoints.
func TestForbiddenAuditedAndProofs(t *testing.T) {
	env := newTestEnv(t)
	it := env.token("it")
	if code := env.call("GET", "/api/v1/audit", it, nil, nil); code != 403 {
		t.Fatalf("audit as IT: %d", code)
	}
	if got := env.auditActions("GET /api/v1/audit"); !slices.Equal(got, []string{"auth.forbidden"}) {
		t.Fatalf("forbidden request on the record: %v", got)
	}

	checkpoint := func() []byte {
		var cp struct{ Checkpoint string }
		if code := env.call("GET", "/api/v1/audit/checkpoint", env.Admin, nil, &cp); code != 200 {
			t.Fatalf("checkpoint: %d", code)
		}
		return []byte(cp.Checkpoint)
	}
	verifier, err := audit.NewVerifier(env.AuditKeyForTest())
	if err != nil {
		t.Fatal(err)
	}
	old := checkpoint()
	env.token("auditor") // grows the log
	latest := checkpoint()
	oldCP, _ := audit.OpenCheckpoint(old, verifier)
	newCP, _ := audit.OpenCheckpoint(latest, verifier)
	if newCP.N <= oldCP.N {
		t.Fatalf("log did not grow: %d -> %d", oldCP.N, newCP.N)
	}

	var inc audit.InclusionProof
	if code := env.call("GET", "/api/v1/audit/proof/inclusion?index=1", env.Admin, nil, &inc); code != 200 {
		t.Fatalf("inclusion proof: %d", code)
	}
	if e, err := audit.VerifyInclusion(latest, verifier, &inc); err != nil || e.Index != 1 {
		t.Fatalf("inclusion proof does not verify: %v %+v", err, e)
	}
	if !bytes.Contains(inc.Entry, []byte(`"auth.forbidden"`)) {
		t.Fatalf("entry 1: %s", inc.Entry)
	}
	inc.Entry = bytes.Replace(inc.Entry, []byte(`"auth.forbidden"`), []byte(`"auth.fine"`), 1)
	if _, err := audit.VerifyInclusion(latest, verifier, &inc); err == nil {
		t.Fatal("an altered entry verified")
	}

	var cons api.AuditConsistencyProof
	if code := env.call("GET", "/api/v1/audit/proof/consistency?old="+strconv.FormatInt(oldCP.N, 10), env.Admin, nil, &cons); code != 200 || cons.NewSize != newCP.N {
		t.Fatalf("consistency proof: %d %+v", code, cons)
	}
	if err := audit.VerifyConsistency(old, latest, verifier, cons.Proof); err != nil {
		t.Fatalf("consistency proof does not verify: %v", err)
	}
	for _, q := range []string{"inclusion?index=999999", "inclusion?index=-1", "consistency?old=5&new=999999"} {
		if code := env.call("GET", "/api/v1/audit/proof/"+q, env.Admin, nil, nil); code != 404 {
			t.Errorf("proof %s: %d, want 404", q, code)
		}
	}
	for _, q := range []string{"inclusion", "inclusion?index=x", "consistency?old=1&new=y"} {
		if code := env.call("GET", "/api/v1/audit/proof/"+q, env.Admin, nil, nil); code != 400 {
			t.Errorf("proof %s: %d, want 400", q, code)
		}
	}
}

// The second approver must be a security token that existed before the request: not an admin,
// not a token minted to approve. An approval whose wipe was never sent (the server stopped in
// between) is carried out when approved again.
func TestApprovalEligibilityAndResume(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	env.uploadPushCert()
	dev := env.newDevice()
	first, second := env.token("security"), env.token("security")
	var held securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", first, []byte(`{"reason":"lost","mode":"full"}`), &held); code != 202 || held.ExpiresAt.IsZero() {
		t.Fatalf("wipe: %d %+v", code, held)
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", second, []byte(`{"reason":"lost","mode":"full"}`), nil); code != 409 {
		t.Fatalf("a second wipe request while one awaits approval: %d, want 409", code)
	}
	late := env.token("security")
	decide := "/api/v1/approvals/" + held.ApprovalID
	for name, tok := range map[string]string{"admin": env.Admin, "a token made after the request": late} {
		if code := env.call("POST", decide, tok, []byte(`{}`), nil); code != 403 {
			t.Errorf("approval by %s: %d, want 403", name, code)
		}
	}

	// Approved in the store, as if the server stopped before sending the wipe.
	secondTok, err := env.TokensForTest().Authenticate(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	err = env.Store().Update(context.Background(), func(tx storage.Tx) error {
		_, err := approvals.Decide(context.Background(), tx.Approvals(), held.ApprovalID, true,
			approvals.Party{Name: "second", TokenID: secondTok.ID, Person: secondTok.Person}, "", time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var resumed struct {
		State   string
		Command *securityAnswer
	}
	if code := env.call("POST", decide, second, []byte(`{}`), &resumed); code != 200 || resumed.Command == nil || resumed.Command.CommandID == "" {
		t.Fatalf("resuming an approved wipe: %d %+v", code, resumed)
	}
	if rec := env.waitCommand(dev.UDID(), resumed.Command.CommandID); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice: %+v", rec.Record)
	}
}
