package appinstances_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/playsim"
	"github.com/halemdm/hale/mdmserver/appattest"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/playintegrity"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/policies"
)

const (
	team, bundle = "ABCDE12345", "org.example.securetext"
	appID        = team + "." + bundle
)

var playCert = playsim.CertificateDigest([]byte("signing cert"))

// devices is the inventory the service reads: device records by ID.
type devices struct {
	mu sync.Mutex
	m  map[string]*inventory.Device
}

func (d *devices) Get(_ context.Context, id string) (*inventory.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, ok := d.m[id]
	if !ok {
		return nil, inventory.ErrNotFound
	}
	c := *dev
	return &c, nil
}

func (d *devices) set(id string, state inventory.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[id] = &inventory.Device{ID: id, State: state}
}

type env struct {
	svc   *appinstances.Service
	st    storage.Store
	devs  *devices
	ca    *applesim.AppAttestCA
	play  *playsim.Service
	actor audit.Entry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ca, err := applesim.NewAppAttestCA()
	if err != nil {
		t.Fatal(err)
	}
	ios, err := appattest.New(team, bundle, appattest.WithRoots(ca.Pool()))
	if err != nil {
		t.Fatal(err)
	}
	play, err := playsim.New()
	if err != nil {
		t.Fatal(err)
	}
	android, err := playintegrity.New(bundle, play.DecryptionKey, play.VerificationKey, playintegrity.WithCertificateDigests(playCert))
	if err != nil {
		t.Fatal(err)
	}
	devs := &devices{m: map[string]*inventory.Device{}}
	devs.set("d1", inventory.StateActive)
	devs.set("d2", inventory.StateActive)
	svc, err := appinstances.New(appinstances.Deps{
		Store:   storage.Scope(st, func(tx storage.Tx) appinstances.Tx { return tx }),
		Devices: devs, IOS: ios, Android: android, Nonces: appinstances.NewNonces(time.Now),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, st: st, devs: devs, ca: ca, play: play, actor: audit.Entry{Actor: "token:it", Outcome: audit.OutcomeOK}}
}

func (e *env) binding(t *testing.T, device string) string {
	t.Helper()
	d, _ := e.devs.Get(context.Background(), device)
	tok, _, err := e.svc.IssueBinding(context.Background(), d, time.Hour, e.actor)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// iosApp is a simulated iPhone app: its App Attest key and its instance ID once registered.
type iosApp struct {
	key *applesim.AppAttestKey
	id  string
}

func (e *env) registerIOS(t *testing.T, binding string) (*iosApp, error) {
	t.Helper()
	key, err := applesim.NewAppAttestKey(appID)
	if err != nil {
		t.Fatal(err)
	}
	se, err := applesim.NewSecureEnclaveKey()
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := e.svc.Nonce()
	att, err := key.Attest(e.ca, []byte(api.AppRequestHash(nonce, se.PKIX())))
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.svc.Register(context.Background(), api.AppRegisterRequest{
		Platform: "ios", BindingToken: binding, Nonce: nonce, PublicKey: base64.StdEncoding.EncodeToString(se.PKIX()),
		KeyID: base64.StdEncoding.EncodeToString(key.KeyID), Attestation: base64.StdEncoding.EncodeToString(att),
	}, audit.Entry{Actor: "anonymous"})
	if err != nil {
		return nil, err
	}
	return &iosApp{key: key, id: in.ID}, nil
}

func (e *env) reportIOS(t *testing.T, app *iosApp, claims api.AppClaims) (*appinstances.Instance, error) {
	t.Helper()
	nonce, _ := e.svc.Nonce()
	data, _ := json.Marshal(api.AppReportData{Nonce: nonce, Claims: claims})
	assertion, err := app.key.Assert(data)
	if err != nil {
		t.Fatal(err)
	}
	return e.svc.Report(context.Background(), api.AppReportRequest{
		InstanceID: app.id, ClientData: base64.StdEncoding.EncodeToString(data), Assertion: base64.StdEncoding.EncodeToString(assertion),
	}, audit.Entry{Actor: "app:" + app.id})
}

func code(err error) string {
	var r *appinstances.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func TestIOSRegisterReportRevoke(t *testing.T) {
	e := newEnv(t)
	tok := e.binding(t, "d1")
	app, err := e.registerIOS(t, tok)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	// The binding token is one-time.
	if _, err := e.registerIOS(t, tok); code(err) != "binding-used" {
		t.Fatalf("second registration with one token: %v", err)
	}
	in, err := e.reportIOS(t, app, api.AppClaims{PasscodeSet: yes(), Jailbroken: no(), ScreenCaptured: no(), AppVersion: "3.2.1", OSVersion: "17.5"})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	p := in.Posture
	if in.DeviceID != "d1" || in.Counter != 1 || p.Attested.Source != policies.ProvenanceAttested ||
		!p.PasscodeSet.Value || p.PasscodeSet.Source != policies.ProvenanceApp || p.Jailbroken.Value || p.AppVersion.Value != "3.2.1" {
		t.Fatalf("instance after report: %+v posture %+v", in, p)
	}
	// A second device's instance is apart from the first.
	if _, err := e.registerIOS(t, e.binding(t, "d2")); err != nil {
		t.Fatal(err)
	}
	// The device is wiped: its instance is refused and recorded revoked; d2's is not.
	e.devs.set("d1", inventory.StateWiped)
	if _, err := e.reportIOS(t, app, api.AppClaims{}); code(err) != "instance-revoked" {
		t.Fatalf("report after wipe: %v", err)
	}
	ins, _ := e.svc.Instances(context.Background(), "d1")
	if len(ins) != 1 || !ins[0].Revoked() || ins[0].RevokedReason != "device wiped" {
		t.Fatalf("d1's instances after wipe: %+v", ins)
	}
	if ins, _ := e.svc.Instances(context.Background(), "d2"); len(ins) != 1 || ins[0].Revoked() {
		t.Fatalf("d2's instances: %+v", ins)
	}
	// Even if the device came back, a revoked instance stays revoked.
	e.devs.set("d1", inventory.StateActive)
	if _, err := e.reportIOS(t, app, api.AppClaims{}); code(err) != "instance-revoked" {
		t.Fatalf("revoked instance reported: %v", err)
	}
}

func TestIOSRefusalsStoreNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	key, _ := applesim.NewAppAttestKey(appID)
	other, _ := applesim.NewAppAttestCA()
	foreign, _ := applesim.NewAppAttestKey("ZZZZZ99999." + bundle)
	tok := e.binding(t, "d1")
	register := func(k *applesim.AppAttestKey, ca *applesim.AppAttestCA, binding string, reuse string) error {
		nonce, _ := e.svc.Nonce()
		if reuse != "" {
			nonce = reuse
		}
		se, _ := applesim.NewSecureEnclaveKey()
		att, _ := k.Attest(ca, []byte(api.AppRequestHash(nonce, se.PKIX())))
		_, err := e.svc.Register(ctx, api.AppRegisterRequest{Platform: "ios", BindingToken: binding, Nonce: nonce,
			PublicKey: base64.StdEncoding.EncodeToString(se.PKIX()),
			KeyID:     base64.StdEncoding.EncodeToString(k.KeyID), Attestation: base64.StdEncoding.EncodeToString(att)}, e.actor)
		return err
	}
	cases := []struct {
		name, want string
		err        error
	}{
		{"another root", appattest.ReasonChain, register(key, other, tok, "")},
		{"wrong RP ID", appattest.ReasonRPID, register(foreign, e.ca, tok, "")},
		{"unknown nonce", "nonce-invalid", register(key, e.ca, tok, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
		{"unknown binding", "binding-invalid", register(key, e.ca, "hab_nope", "")},
	}
	// An attestation made for one proof key, sent with another: the key is not the one Apple
	// vouched for.
	{
		nonce, _ := e.svc.Nonce()
		se1, _ := applesim.NewSecureEnclaveKey()
		se2, _ := applesim.NewSecureEnclaveKey()
		att, _ := key.Attest(e.ca, []byte(api.AppRequestHash(nonce, se1.PKIX())))
		_, err := e.svc.Register(ctx, api.AppRegisterRequest{Platform: "ios", BindingToken: tok, Nonce: nonce,
			PublicKey: base64.StdEncoding.EncodeToString(se2.PKIX()),
			KeyID:     base64.StdEncoding.EncodeToString(key.KeyID), Attestation: base64.StdEncoding.EncodeToString(att)}, e.actor)
		cases = append(cases, struct {
			name, want string
			err        error
		}{"proof key swapped", appattest.ReasonNonce, err})
	}
	for _, c := range cases {
		if code(c.err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, c.err, c.want)
		}
	}
	// The token survived every refusal unused, and no instance was stored.
	if ins, _ := e.svc.Instances(ctx, "d1"); len(ins) != 0 {
		t.Fatalf("refusals stored instances: %+v", ins)
	}
	app, err := e.registerIOS(t, tok)
	if err != nil {
		t.Fatalf("the token after refusals: %v", err)
	}

	// A replayed report, a rolled-back counter and a report signed by another key.
	nonce, _ := e.svc.Nonce()
	data, _ := json.Marshal(api.AppReportData{Nonce: nonce, Claims: api.AppClaims{PasscodeSet: yes()}})
	a1, _ := app.key.Assert(data)
	req := api.AppReportRequest{InstanceID: app.id, ClientData: base64.StdEncoding.EncodeToString(data), Assertion: base64.StdEncoding.EncodeToString(a1)}
	if _, err := e.svc.Report(ctx, req, e.actor); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Report(ctx, req, e.actor); code(err) != appattest.ReasonAssertionReplay {
		t.Fatalf("replayed report: %v", err)
	}
	nonce2, _ := e.svc.Nonce()
	data2, _ := json.Marshal(api.AppReportData{Nonce: nonce2, Claims: api.AppClaims{PasscodeSet: no()}})
	rolled, _ := app.key.AssertWithCounter(data2, 1)
	req2 := api.AppReportRequest{InstanceID: app.id, ClientData: base64.StdEncoding.EncodeToString(data2), Assertion: base64.StdEncoding.EncodeToString(rolled)}
	if _, err := e.svc.Report(ctx, req2, e.actor); code(err) != appattest.ReasonAssertionReplay {
		t.Fatalf("rolled-back counter: %v", err)
	}
	forged, _ := key.Assert(data2)
	req2.Assertion = base64.StdEncoding.EncodeToString(forged)
	if _, err := e.svc.Report(ctx, req2, e.actor); code(err) != appattest.ReasonAssertionSignature {
		t.Fatalf("report signed by another key: %v", err)
	}
	ins, _ := e.svc.Instances(ctx, "d1")
	if len(ins) != 1 || ins[0].Counter != 1 || !ins[0].Posture.PasscodeSet.Value {
		t.Fatalf("refused reports changed the instance: %+v", ins)
	}
}

func TestAndroidRegisterAndReport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	register := func(pkg string, device []string) (*appinstances.Instance, error) {
		nonce, _ := e.svc.Nonce()
		p := playsim.Genuine(pkg, playCert, api.AppRequestHash(nonce, der), time.Now())
		p.DeviceIntegrity.DeviceRecognitionVerdict = device
		tok, err := e.play.Token(p)
		if err != nil {
			t.Fatal(err)
		}
		return e.svc.Register(ctx, api.AppRegisterRequest{Platform: "android", BindingToken: e.binding(t, "d2"), Nonce: nonce,
			PublicKey: base64.StdEncoding.EncodeToString(der), IntegrityToken: tok}, e.actor)
	}
	if _, err := register("com.evil.clone", []string{playintegrity.DeviceIntegrity}); code(err) != playintegrity.ReasonPackage {
		t.Fatalf("wrong package: %v", err)
	}
	in, err := register(bundle, []string{playintegrity.DeviceBasicIntegrity})
	if err != nil {
		t.Fatal(err)
	}
	if j := in.Posture.Jailbroken; j == nil || !j.Value || j.Source != policies.ProvenanceAttested {
		t.Fatalf("basic integrity only must read rooted, attested: %+v", j)
	}
	// A report with a fresh verdict that meets device integrity; the app's own heuristics
	// never overrule Google's word.
	nonce, _ := e.svc.Nonce()
	data, _ := json.Marshal(api.AppReportData{Nonce: nonce, Claims: api.AppClaims{PasscodeSet: yes(), Jailbroken: yes()}})
	digest := sha256.Sum256(data)
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	tok, _ := e.play.Token(playsim.Genuine(bundle, playCert, api.AppRequestHash(nonce, data), time.Now()))
	got, err := e.svc.Report(ctx, api.AppReportRequest{InstanceID: in.ID, ClientData: base64.StdEncoding.EncodeToString(data),
		Assertion: base64.StdEncoding.EncodeToString(sig), IntegrityToken: tok}, e.actor)
	if err != nil {
		t.Fatal(err)
	}
	if j := got.Posture.Jailbroken; j.Value || j.Source != policies.ProvenanceAttested || !got.Posture.PasscodeSet.Value {
		t.Fatalf("after a report: %+v", got.Posture)
	}
	// Tampered client data: the signature no longer holds.
	data, _ = json.Marshal(api.AppReportData{Nonce: nonce, Claims: api.AppClaims{PasscodeSet: no()}})
	if _, err := e.svc.Report(ctx, api.AppReportRequest{InstanceID: in.ID, ClientData: base64.StdEncoding.EncodeToString(data),
		Assertion: base64.StdEncoding.EncodeToString(sig)}, e.actor); code(err) != "signature-invalid" {
		t.Fatalf("tampered report: %v", err)
	}
}

func TestBindingRules(t *testing.T) {
	e := newEnv(t)
	d, _ := e.devs.Get(context.Background(), "d1")
	if _, _, err := e.svc.IssueBinding(context.Background(), d, 31*24*time.Hour, e.actor); code(err) != "invalid-ttl" {
		t.Fatalf("ttl over 30 days: %v", err)
	}
	d.State = inventory.StateUnenrolled
	if _, _, err := e.svc.IssueBinding(context.Background(), d, time.Hour, e.actor); code(err) != "device-ended" {
		t.Fatalf("binding for an unenrolled device: %v", err)
	}
}
