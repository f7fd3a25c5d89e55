package mdmserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/playsim"
	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

const (
	testAppTeam   = "ABCDE12345"
	testAppBundle = "org.example.securetext"
)

var testAppCert = playsim.CertificateDigest([]byte("securetext signing certificate"))

// appEnv is a server configured for the messaging app on both platforms, with a simulated
// Apple App Attest CA and the organisation's simulated Play Integrity keys.
func appEnv(t *testing.T) (*testEnv, *applesim.AppAttestCA, *playsim.Service) {
	t.Helper()
	return appEnvWith(t, nil)
}

// appEnvWith is appEnv with server options and configuration changes.
func appEnvWith(t *testing.T, opts []mdmserver.Option, mutate ...func(*mdmserver.Config)) (*testEnv, *applesim.AppAttestCA, *playsim.Service) {
	t.Helper()
	ca, err := applesim.NewAppAttestCA()
	if err != nil {
		t.Fatal(err)
	}
	play, err := playsim.New()
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(t.TempDir(), "appattest-root.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := newTestEnvWith(t, opts, func(c *mdmserver.Config) {
		c.AppIOSTeamID, c.AppIOSBundleID, c.AppIOSRootsFile = testAppTeam, testAppBundle, roots
		c.AppAndroidPackage, c.AppAndroidDecryptKey, c.AppAndroidVerifyKey = testAppBundle, play.DecryptionKey, play.VerificationKey
		c.AppAndroidCertDigests = []string{testAppCert}
		for _, m := range mutate {
			m(c)
		}
	})
	return env, ca, play
}

func (env *testEnv) appNonce() string {
	env.t.Helper()
	var n api.AppNonceAnswer
	if code := env.call("POST", "/app/v1/nonce", "", nil, &n); code != 200 || n.Nonce == "" {
		env.t.Fatalf("nonce: %d %+v", code, n)
	}
	return n.Nonce
}

// iosReport signs claims with the app's App Attest key and posts them.
func (env *testEnv) iosReport(key *applesim.AppAttestKey, instance string, claims api.AppClaims, out any) int {
	env.t.Helper()
	data, _ := json.Marshal(api.AppReportData{Nonce: env.appNonce(), Claims: claims})
	assertion, err := key.Assert(data)
	if err != nil {
		env.t.Fatal(err)
	}
	body, _ := json.Marshal(api.AppReportRequest{InstanceID: instance,
		ClientData: base64.StdEncoding.EncodeToString(data), Assertion: base64.StdEncoding.EncodeToString(assertion)})
	return env.call("POST", "/app/v1/report", "", body, out)
}

// simApp is a simulated messaging app on an iPhone: its App Attest key, its Secure Enclave
// proof key and its instance ID.
type simApp struct {
	key *applesim.AppAttestKey
	se  *applesim.SecureEnclaveKey
	id  string
}

// iosApp registers a simulated messaging app on device id (bound by a token IT issues).
func (env *testEnv) iosApp(ca *applesim.AppAttestCA, id string) *simApp {
	env.t.Helper()
	var bind api.AppBindingAnswer
	if code := env.call("POST", "/api/v1/devices/"+id+"/app-bindings", env.token("it"), nil, &bind); code != 201 {
		env.t.Fatalf("binding: %d", code)
	}
	key, err := applesim.NewAppAttestKey(testAppTeam + "." + testAppBundle)
	if err != nil {
		env.t.Fatal(err)
	}
	se, err := applesim.NewSecureEnclaveKey()
	if err != nil {
		env.t.Fatal(err)
	}
	code, reg := env.registerIOS(bind.Token, key, se, ca)
	if code != 201 {
		env.t.Fatalf("register: %d", code)
	}
	return &simApp{key: key, se: se, id: reg.InstanceID}
}

// registerIOS posts a registration attested by k through ca, binding the proof key se.
func (env *testEnv) registerIOS(binding string, k *applesim.AppAttestKey, se *applesim.SecureEnclaveKey, ca *applesim.AppAttestCA) (int, api.AppRegisterAnswer) {
	env.t.Helper()
	nonce := env.appNonce()
	att, err := k.Attest(ca, []byte(api.AppRequestHash(nonce, se.PKIX())))
	if err != nil {
		env.t.Fatal(err)
	}
	body, _ := json.Marshal(api.AppRegisterRequest{Platform: "ios", BindingToken: binding, Nonce: nonce,
		PublicKey: base64.StdEncoding.EncodeToString(se.PKIX()),
		KeyID:     base64.StdEncoding.EncodeToString(k.KeyID), Attestation: base64.StdEncoding.EncodeToString(att)})
	var ans api.AppRegisterAnswer
	return env.call("POST", "/app/v1/register", "", body, &ans), ans
}

// appToken asks POST /app/v1/token with a fresh signed report and wants status.
func (env *testEnv) appToken(key *applesim.AppAttestKey, instance string, status int) api.PostureToken {
	env.t.Helper()
	var tok api.PostureToken
	if code := env.appTokenInto(key, instance, &tok); code != status {
		env.t.Fatalf("app token: %d, want %d", code, status)
	}
	return tok
}

func (env *testEnv) appTokenCode(key *applesim.AppAttestKey, instance string) int {
	env.t.Helper()
	return env.appTokenInto(key, instance, nil)
}

func (env *testEnv) appTokenInto(key *applesim.AppAttestKey, instance string, out any) int {
	env.t.Helper()
	data, _ := json.Marshal(api.AppReportData{Nonce: env.appNonce()})
	assertion, err := key.Assert(data)
	if err != nil {
		env.t.Fatal(err)
	}
	body, _ := json.Marshal(api.AppReportRequest{InstanceID: instance,
		ClientData: base64.StdEncoding.EncodeToString(data), Assertion: base64.StdEncoding.EncodeToString(assertion)})
	return env.call("POST", "/app/v1/token", "", body, out)
}

func TestAppInstanceIOSEndToEnd(t *testing.T) {
	env, ca, _ := appEnv(t)
	env.uploadPushCert()
	it, security, accessTok := env.token("it"), env.token("security"), env.token("access")
	// A policy that holds iPhones to the app's evidence: jailbreak must be reported, by the app.
	policy := []byte("integrity:\n  block_jailbroken: true\n  jailbreak_evidence: required\n  require_app_attestation: true\n")
	var put struct{ Unobservable []policies.UnobservableRule }
	if code := env.call("PUT", "/api/v1/policies/phones", it, policy, &put); code != 200 {
		t.Fatalf("policy: %d", code)
	}
	for _, u := range put.Unobservable {
		if slices.Contains(u.Platforms, policies.PlatformIOS) {
			t.Fatalf("with the app required, a rule is unobservable on iOS: %+v", u)
		}
	}
	if code := env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"default"},"policy":"phones"}`), nil); code != 200 {
		t.Fatalf("assign: %d", code)
	}
	state := applesim.IOSState()
	state.ManagedApps = []string{testAppBundle} // MDM installed the messaging app
	dev := env.newDevice(applesim.WithState(state))

	// IT issues a binding token for the iPhone, delivered as the app's managed app
	// configuration; the auditor role may not.
	var bind api.AppBindingAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/app-bindings", env.token("auditor"), nil, nil); code != 403 {
		t.Fatalf("auditor binding: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/app-bindings", it, []byte(`{"ttl":"1h","deliver":true}`), &bind); code != 201 || bind.CommandID == "" {
		t.Fatalf("binding: %d %+v", code, bind)
	}
	if rec := env.waitCommand(dev.UDID(), bind.CommandID); rec.State != commands.StateAcknowledged {
		t.Fatalf("Settings command: %+v", rec.Record)
	}
	// The app reads it from UserDefaults (com.apple.configuration.managed).
	conf := dev.ManagedAppConfiguration(testAppBundle)
	if conf[api.AppConfigServerURL] != env.PublicURL || conf[api.AppConfigBindingToken] != bind.Token {
		t.Fatalf("managed app configuration: %v", conf)
	}
	bind.Token = conf[api.AppConfigBindingToken].(string)

	// The app registers with an attestation over the server's nonce.
	key, err := applesim.NewAppAttestKey(testAppTeam + "." + testAppBundle)
	if err != nil {
		t.Fatal(err)
	}
	se, err := applesim.NewSecureEnclaveKey()
	if err != nil {
		t.Fatal(err)
	}
	register := func(binding string, k *applesim.AppAttestKey, ca *applesim.AppAttestCA) (int, api.AppRegisterAnswer) {
		return env.registerIOS(binding, k, se, ca)
	}
	other, _ := applesim.NewAppAttestCA()
	if code, _ := register(bind.Token, key, other); code != 401 {
		t.Fatalf("attestation from another root: %d", code)
	}
	code, reg := register(bind.Token, key, ca)
	if code != 201 || reg.InstanceID == "" || reg.Platform != "ios" {
		t.Fatalf("register: %d %+v", code, reg)
	}
	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d)
	if reg.DeviceID != d.ID {
		t.Fatalf("instance bound to %s, device is %s", reg.DeviceID, d.ID)
	}
	// Registered but silent about jailbreak: denied, the claim unknown.
	a := env.waitAccess(accessTok, d.ID, "denied for want of the jailbreak claim", func(a access.Answer) bool {
		return !a.Allow && slices.Contains(a.ReasonCodes(), policies.CodeClaimUnknown)
	})
	if a.Posture == nil || a.Posture.AppAttested == nil || a.Posture.AppAttested.Source != policies.ProvenanceAttested {
		t.Fatalf("after registration: %+v", a.Posture)
	}
	if code, _ := register(bind.Token, key, ca); code != 401 {
		t.Fatalf("binding token reused: %d", code)
	}

	// The app reports what MDM cannot see.
	yes, no := true, false
	var rep api.AppReportAnswer
	if code := env.iosReport(key, reg.InstanceID, api.AppClaims{PasscodeSet: &yes, Jailbroken: &no, ScreenCaptured: &no, AppVersion: "3.2.1", OSVersion: "17.5"}, &rep); code != 200 {
		t.Fatalf("report: %d", code)
	}
	if c := rep.Claims["jailbroken"]; c.Value != false || c.Source != "app" || rep.Claims["app_attested"].Source != "attested" {
		t.Fatalf("claims: %+v", rep.Claims)
	}
	a = env.access(accessTok, d.ID)
	if !a.Allow || !a.Compliant || a.Posture.Jailbroken == nil || a.Posture.Jailbroken.Source != policies.ProvenanceApp {
		t.Fatalf("after the app's report: allow=%v reasons=%v posture=%+v", a.Allow, a.ReasonCodes(), a.Posture)
	}
	// The app's heuristics find a jailbreak: denied at once (no grace for jailbroken).
	if code := env.iosReport(key, reg.InstanceID, api.AppClaims{Jailbroken: &yes}, nil); code != 200 {
		t.Fatalf("report: %d", code)
	}
	if a = env.access(accessTok, d.ID); a.Allow || !slices.Contains(a.ReasonCodes(), policies.CodeJailbroken) {
		t.Fatalf("jailbroken: allow=%v reasons=%v", a.Allow, a.ReasonCodes())
	}
	if code := env.iosReport(key, reg.InstanceID, api.AppClaims{Jailbroken: &no}, nil); code != 200 {
		t.Fatalf("report: %d", code)
	}
	var list api.AppInstances
	if code := env.call("GET", "/api/v1/devices/"+d.ID+"/app-instances", env.token("auditor"), nil, &list); code != 200 ||
		len(list.Instances) != 1 || list.Instances[0].RevokedAt != nil || list.Instances[0].LastReportAt == nil {
		t.Fatalf("instances: %d %+v", code, list)
	}

	// The app gets a posture token bound to its key, and the messaging backend (package
	// posture, as examples/backend runs it) opens a session with it and a DPoP proof.
	stream := env.stream(accessTok, `{"aud":"messaging"}`)
	tok := env.appToken(key, reg.InstanceID, 200)
	verifier := posture.NewVerifier(posture.RemoteJWKS(env.URL+"/access/v1/jwks.json", env.Client), posture.WithIssuer(env.PublicURL))
	var got []verifiedEvent
	rx := posture.NewReceiver(posture.RemoteJWKS(env.URL+"/access/v1/jwks.json", env.Client), "messaging", env.PublicURL,
		posture.WithVerifier(verifier), posture.WithOnEvent(func(_ context.Context, set posture.SETClaims, typ string, _ posture.CAEPEvent) {
			got = append(got, verifiedEvent{set, typ})
		}))
	backend := httptest.NewServer(posture.Middleware(&posture.Gate{Verifier: verifier, PublicURL: "https://chat.example.org"})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a, _ := posture.FromContext(r.Context())
			_, _ = w.Write([]byte(a.Claims.AppInstance))
		})))
	defer backend.Close()
	session := func(token string) int {
		t.Helper()
		proof, err := posture.NewProof(se.PublicKey(), se.SignDigest, "POST", "https://chat.example.org/sessions", token, randid.Hex(8), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", backend.URL+"/sessions", nil)
		req.Header.Set("Authorization", "DPoP "+token)
		req.Header.Set(posture.DPoPHeader, proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && string(body) != reg.InstanceID {
			t.Fatalf("session for %q, want the instance %s", body, reg.InstanceID)
		}
		return resp.StatusCode
	}
	if code := session(tok.Token); code != 200 {
		t.Fatalf("backend session with the app's token: %d", code)
	}
	// The token without the app key's proof is worth nothing.
	req, _ := http.NewRequest("POST", backend.URL+"/sessions", nil)
	req.Header.Set("Authorization", "DPoP "+tok.Token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("token without proof: %v %v", resp, err)
	}

	// Security wipes the phone: the instance is revoked at once and refused from then on.
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", security, []byte(`{"reason":"lost","mode":"full"}`), nil); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	// The backend hears of it: a session-revoked SET for the device, and one naming the app
	// instance on it; the app's token no longer opens a session.
	var named bool
	for deadline := time.Now().Add(10 * time.Second); !named && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, sets := env.pollSETs(accessTok, stream.StreamID, `{"returnImmediately":true}`)
		for _, set := range sets {
			if err := rx.Deliver(t.Context(), set); err != nil {
				t.Fatal(err)
			}
		}
		for _, ev := range got {
			if ev.typ == posture.EventSessionRevoked && ev.claims.SubID.AppInstance() == reg.InstanceID && ev.claims.SubID.DeviceID() == d.ID {
				named = true
			}
		}
	}
	if !named {
		t.Fatalf("no session-revoked SET names the app instance: %+v", got)
	}
	if code := session(tok.Token); code != 403 {
		t.Fatalf("backend session after the wipe: %d", code)
	}
	if code := env.appTokenCode(key, reg.InstanceID); code != 403 {
		t.Fatalf("token after the wipe: %d", code)
	}
	env.call("GET", "/api/v1/devices/"+d.ID+"/app-instances", it, nil, &list)
	if len(list.Instances) != 1 || list.Instances[0].RevokedAt == nil || list.Instances[0].RevokedReason != "device wipe ordered" {
		t.Fatalf("instances after wipe: %+v", list)
	}
	if code := env.iosReport(key, reg.InstanceID, api.AppClaims{PasscodeSet: &yes}, nil); code != 403 {
		t.Fatalf("report after wipe: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/app-bindings", it, nil, nil); code != 409 {
		t.Fatalf("binding for a wiped phone: %d", code)
	}
}

func TestAppInstanceAndroidEndToEnd(t *testing.T) {
	env, _, play := appEnv(t)
	dev := env.newDevice()
	var bind api.AppBindingAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/app-bindings", env.token("it"), nil, &bind); code != 201 {
		t.Fatalf("binding: %d", code)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	register := func(p func(nonce string) playsim.Payload) (int, api.AppRegisterAnswer) {
		nonce := env.appNonce()
		tok, err := play.Token(p(nonce))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(api.AppRegisterRequest{Platform: "android", BindingToken: bind.Token, Nonce: nonce,
			PublicKey: base64.StdEncoding.EncodeToString(der), IntegrityToken: tok})
		var ans api.AppRegisterAnswer
		return env.call("POST", "/app/v1/register", "", body, &ans), ans
	}
	// A verdict from an hour ago, and one bound to another key: refused, nothing stored.
	if code, _ := register(func(n string) playsim.Payload {
		return playsim.Genuine(testAppBundle, testAppCert, api.AppRequestHash(n, der), time.Now().Add(-time.Hour))
	}); code != 401 {
		t.Fatalf("stale verdict: %d", code)
	}
	if code, _ := register(func(n string) playsim.Payload {
		return playsim.Genuine(testAppBundle, testAppCert, api.AppRequestHash(n, []byte("another key")), time.Now())
	}); code != 401 {
		t.Fatalf("verdict bound to another key: %d", code)
	}
	code, reg := register(func(n string) playsim.Payload {
		return playsim.Genuine(testAppBundle, testAppCert, api.AppRequestHash(n, der), time.Now())
	})
	if code != 201 {
		t.Fatalf("register: %d", code)
	}
	yes := true
	data, _ := json.Marshal(api.AppReportData{Nonce: env.appNonce(), Claims: api.AppClaims{PasscodeSet: &yes}})
	digest := sha256.Sum256(data)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	body, _ := json.Marshal(api.AppReportRequest{InstanceID: reg.InstanceID, ClientData: base64.StdEncoding.EncodeToString(data),
		Assertion: base64.StdEncoding.EncodeToString(sig)})
	var rep api.AppReportAnswer
	if code := env.call("POST", "/app/v1/report", "", body, &rep); code != 200 ||
		rep.Claims["jailbroken"].Source != "attested" || rep.Claims["jailbroken"].Value != false || rep.Claims["passcode_set"].Value != true {
		t.Fatalf("report: %d %+v", code, rep)
	}
	// The same signed report again: its nonce is spent.
	if code := env.call("POST", "/app/v1/report", "", body, nil); code != 401 {
		t.Fatalf("replayed report: %d", code)
	}
}

// Unenrolling a device revokes its app instances at once, and the access API denies it.
func TestAppInstancesRevokedByUnenroll(t *testing.T) {
	env, ca, _ := appEnv(t)
	dev := env.newDevice(applesim.WithState(applesim.IOSState()))
	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d)
	env.iosApp(ca, d.ID)
	if code := env.call("DELETE", "/api/v1/devices/"+d.ID, env.token("it"), nil, nil); code != 200 {
		t.Fatalf("unenroll: %d", code)
	}
	var list api.AppInstances
	env.call("GET", "/api/v1/devices/"+d.ID+"/app-instances", env.Admin, nil, &list)
	if len(list.Instances) != 1 || list.Instances[0].RevokedAt == nil || list.Instances[0].RevokedReason != "device unenrolled" {
		t.Fatalf("after unenroll: %+v", list)
	}
	if a := env.access(env.token("access"), d.ID); a.Allow {
		t.Fatalf("unenrolled device allowed: %+v", a)
	}
}

// healthyApp registers the simulated messaging app on device id and returns what sends one
// report of a healthy app (passcode set, not jailbroken, no screen capture).
func (env *testEnv) healthyApp(ca *applesim.AppAttestCA, id string) func() {
	env.t.Helper()
	app := env.iosApp(ca, id)
	yes, no := true, false
	return func() {
		env.t.Helper()
		if code := env.iosReport(app.key, app.id, api.AppClaims{PasscodeSet: &yes, Jailbroken: &no, ScreenCaptured: &no, AppVersion: "3.2.1"}, nil); code != 200 {
			env.t.Fatalf("app report: %d", code)
		}
	}
}

// One app instance's key cannot speak for another: a report or a token request for instance B
// signed with instance A's key is refused, and B's record is untouched (its next honest report,
// whose counter the refused one did not move, is taken).
func TestAppInstanceCannotSpeakForAnother(t *testing.T) {
	env, appCA, _ := appEnv(t)
	env.uploadPushCert()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := env.checkedInDevice(ctx, applesim.WithState(applesim.IOSState()))
	a, b := env.iosApp(appCA, id), env.iosApp(appCA, id)
	yes, no := true, false
	claims := api.AppClaims{PasscodeSet: &yes, Jailbroken: &no, ScreenCaptured: &no, AppVersion: "3.2.1"}
	if code := env.iosReport(a.key, b.id, claims, nil); code == 200 {
		t.Fatal("a report for B signed with A's key was taken")
	}
	if code := env.appTokenCode(a.key, b.id); code == 200 {
		t.Fatal("a token for B was issued on A's signature")
	}
	if code := env.iosReport(b.key, b.id, claims, nil); code != 200 {
		t.Fatalf("B's own report after the refused ones: %d", code)
	}
}
