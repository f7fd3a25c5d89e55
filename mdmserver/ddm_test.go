package mdmserver_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/ddmschema"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// ddmEnv is a server with declarative management on, the HIPAA example assigned to every
// device, a poll event stream, and a simulated iPhone enrolled the real way that synced its
// declarations and is compliant.
type ddmEnv struct {
	*testEnv
	it, access, streamID string
	phone                *applesim.Device
	id                   string
}

func newDDMEnv(t *testing.T) *ddmEnv {
	env, appCA, _ := appEnvWith(t, nil, func(c *mdmserver.Config) { c.AppleDDM = true })
	env.uploadPushCert()
	e := &ddmEnv{testEnv: env, it: env.token("it"), access: env.token("access")}
	env.applyExample(e.it, "hipaa-texting.yaml", "hipaa")
	env.assignDefault(e.it, "hipaa")
	e.streamID = env.stream(e.access, `{"aud":"messaging","events_requested":["`+posture.EventComplianceChange+`","`+posture.EventSessionRevoked+`"]}`).StreamID
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.phone, e.id = env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	err := e.phone.WaitFor(wctx, func(s applesim.State, _ []applesim.CommandRecord) bool {
		_, ok := s.Declaration(policies.DeclarationIdentifier("hipaa", policies.DeclarationPasscode))
		return ok && len(s.Profiles) >= 2
	})
	if err != nil {
		t.Fatalf("the iPhone never synced its declarations: %v (state %+v)", err, e.phone.State().DDM)
	}
	// The example requires the messaging app's attested evidence: the phone runs it, and it
	// reports once (the test's answers stay within the example's 15 minutes).
	env.healthyApp(appCA, e.id)()
	return e
}

// drainSETs acknowledges every event the stream holds and returns them by type.
func (e *ddmEnv) drainSETs() map[string][]posture.SETClaims {
	e.t.Helper()
	rx, verified := e.receiverFor("messaging")
	_, sets := e.pollSETs(e.access, e.streamID, `{"returnImmediately":true}`)
	var jtis []string
	for jti, set := range sets {
		if err := rx.Deliver(e.t.Context(), set); err != nil {
			e.t.Fatalf("SET does not verify: %v", err)
		}
		jtis = append(jtis, jti)
	}
	if len(jtis) > 0 {
		ack, _ := json.Marshal(posture.PollRequest{Ack: jtis, ReturnImmediately: true})
		e.pollSETs(e.access, e.streamID, string(ack))
	}
	out := map[string][]posture.SETClaims{}
	for _, v := range *verified {
		out[v.typ] = append(out[v.typ], v.claims)
	}
	return out
}

// waitSET polls the stream until an event of typ about the device arrives.
func (e *ddmEnv) waitSET(typ string) {
	e.t.Helper()
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got := e.drainSETs()
		for k, v := range got {
			for _, c := range v {
				seen = append(seen, k+" "+c.SubID.Format+":"+c.SubID.ID)
			}
		}
		for _, c := range got[typ] {
			if c.SubID.ID == e.id {
				return
			}
		}
	}
	e.t.Fatalf("no %s event for %s; saw %v", typ, e.id, seen)
}

// Issue 16: a simulated iPhone on declarative management under the HIPAA example gets its
// declarations (passcode settings, legacy profiles for the restrictions and notifications,
// status subscriptions), reports status and is compliant on that alone; then its passcode
// stops being compliant on the device (the answer turns noncompliant, in grace as the example
// says), then is removed, and the access answer flips to deny and a SET is delivered, with no
// command from the server: the device's own status reports did it.
func TestDDMIPhoneUnderHIPAA(t *testing.T) {
	e := newDDMEnv(t)
	st := e.phone.State()
	for _, kind := range []string{policies.ProfileRestrictions, policies.ProfileNotifications} {
		if _, ok := st.Profile(policies.ProfileIdentifier("hipaa", kind)); !ok {
			t.Errorf("the legacy declaration did not install the %s profile", kind)
		}
	}
	for _, d := range st.DDM.Declarations {
		if !d.Active || d.Valid != "valid" {
			t.Errorf("declaration %s: active=%v valid=%s %v", d.Identifier, d.Active, d.Valid, d.Reasons)
		}
	}
	a := e.waitAccess(e.access, e.id, "allowed and compliant on declarations", func(a access.Answer) bool {
		return a.Allow && a.Compliant && a.Posture != nil && a.Posture.Declarations != nil
	})
	if p := a.Posture; p.PasscodeCompliant == nil || p.PasscodeCompliant.Source != policies.ProvenanceMDM ||
		p.OSUpdate == nil || p.OSUpdate.Value.InstallState != "none" {
		t.Fatalf("passcode compliance and OS update from status: %+v %+v", p.PasscodeCompliant, p.OSUpdate)
	}
	e.drainSETs()

	commandsBefore := len(e.phone.Commands())
	reportsBefore := len(e.phone.StatusReports())
	// The clinician sets a four-digit passcode: the policy wants six.
	e.phone.SetPasscode(4, false, false)
	a = e.waitAccess(e.access, e.id, "noncompliant", func(a access.Answer) bool { return !a.Compliant })
	if !slices.Contains(a.ReasonCodes(), policies.CodePasscodeNoncompliant) || !a.InGrace {
		t.Fatalf("a short passcode: in_grace=%v reasons %v", a.InGrace, a.ReasonCodes())
	}
	// The example gives a passcode lapse 24 hours of grace, so the answer is still allow and
	// no event goes out (events follow allow flips). Removing the passcode leaves no data
	// protection either, which the example denies at once: the backend is told.
	e.phone.SetPasscodePresent(false)
	a = e.waitAccess(e.access, e.id, "denied", func(a access.Answer) bool { return !a.Allow })
	if !slices.Contains(a.ReasonCodes(), policies.CodeEncryptionOff) {
		t.Fatalf("reasons %v", a.ReasonCodes())
	}
	e.waitSET(posture.EventSessionRevoked)
	if got := len(e.phone.Commands()); got != commandsBefore {
		t.Errorf("the server sent %d commands; status reports alone should have done it", got-commandsBefore)
	}
	if len(e.phone.StatusReports()) <= reportsBefore {
		t.Error("no status report was sent")
	}
	e.phone.SetPasscode(6, false, false)
	e.waitAccess(e.access, e.id, "allowed again", func(a access.Answer) bool { return a.Allow && a.Compliant })
	checkStatusReports(t, e.phone.StatusReports(), "iOS")
}

// A policy change reaches a device on declarative management as new tokens with the
// DeclarativeManagement command; a declaration the device refuses shows in devices show (its
// posture), the access reasons and the audit record.
func TestDDMPolicyChangeAndDeclarationErrors(t *testing.T) {
	e := newDDMEnv(t)
	restrictions := policies.DeclarationIdentifier("hipaa", policies.LegacyDeclarationKind(policies.ProfileRestrictions))
	e.phone.Update(func(s *applesim.State) { s.DDM.Refuse = []string{restrictions} })
	before := e.phone.State().DDM.DeclarationsToken

	doc, _ := os.ReadFile(filepath.Join("..", "examples", "policies", "hipaa-texting.yaml"))
	doc = []byte(strings.Replace(string(doc), "min_length: 6", "min_length: 8", 1))
	if code := e.call("PUT", "/api/v1/policies/hipaa", e.it, doc, nil); code != 200 {
		t.Fatalf("update policy: %d", code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := e.phone.WaitFor(ctx, func(s applesim.State, _ []applesim.CommandRecord) bool {
		return s.DDM.DeclarationsToken != before
	}); err != nil {
		t.Fatalf("the new declarations never arrived: %v", err)
	}
	n := 0
	for _, c := range e.phone.Commands() {
		if c.RequestType == "DeclarativeManagement" && c.Status == applesim.StatusAcknowledged {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d DeclarativeManagement commands, want 2 (enrollment, policy change)", n)
	}
	// A six-digit passcode no longer meets the new policy, as the device itself says.
	a := e.waitAccess(e.access, e.id, "declaration failed", func(a access.Answer) bool {
		return slices.Contains(a.ReasonCodes(), policies.CodeDeclarationFailed)
	})
	if !slices.Contains(a.ReasonCodes(), policies.CodePasscodeNoncompliant) {
		t.Errorf("the stricter passcode rule did not reach the device: %v", a.ReasonCodes())
	}
	var dev api.DeviceDetail
	if code := e.call("GET", "/api/v1/devices/"+e.id, e.it, nil, &dev); code != 200 || dev.Posture == nil || dev.Posture.Declarations == nil {
		t.Fatalf("devices show: %d %+v", code, dev.Posture)
	}
	found := false
	for _, d := range dev.Posture.Declarations.Value {
		if d.Identifier == restrictions && d.Valid == "invalid" && slices.Contains(d.Reasons, "Error.ConfigurationCannotBeApplied") {
			found = true
		}
	}
	if !found {
		t.Errorf("devices show lacks the refused declaration: %+v", dev.Posture.Declarations.Value)
	}
	audited := false
	for _, en := range e.auditEntries(e.id) {
		if en.Action == "declaration.failed" && en.Details["declaration"] == restrictions {
			audited = true
		}
	}
	if !audited {
		t.Error("the refused declaration is not on the audit record")
	}
}

// checkStatusReports validates every status report a simulated device sent against Apple's
// schema: the report's shape and each status item (its name, type, values, availability).
func checkStatusReports(t *testing.T, reports [][]byte, platform string) {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "apple-device-management")
	if _, err := os.Stat(dir); err != nil {
		t.Logf("Apple's schema is not at %s: status reports not checked", dir)
		return
	}
	schema, err := ddmschema.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) == 0 {
		t.Fatal("no status reports")
	}
	for _, r := range reports {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		for _, err := range schema.ValidateProtocol("StatusReport", m) {
			t.Errorf("status report: %v", err)
		}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			if schema.StatusItems[prefix] != nil {
				for _, err := range schema.ValidateStatusItem(prefix, v, ddmschema.Platform{OS: platform, Version: "17.0"}) {
					t.Errorf("status item: %v", err)
				}
				return
			}
			mv, ok := v.(map[string]any)
			if !ok {
				t.Errorf("status item %q is not in the schema", prefix)
				return
			}
			for k, sub := range mv {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, sub)
			}
		}
		walk("", m["StatusItems"])
	}
}
