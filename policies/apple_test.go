package policies

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

// testEscrowCert returns a DER certificate to escrow FileVault keys to.
func testEscrowCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Hale FileVault escrow"},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

type profileDoc struct {
	PayloadContent      []map[string]any
	PayloadIdentifier   string
	PayloadUUID         string
	PayloadType         string
	PayloadVersion      int
	PayloadScope        string
	PayloadOrganization string
}

func decodeProfile(t *testing.T, b []byte) profileDoc {
	t.Helper()
	var doc profileDoc
	if err := plist.Unmarshal(b, &doc); err != nil {
		t.Fatalf("profile does not parse as a plist: %v\n%s", err, b)
	}
	return doc
}

func byKind(t *testing.T, profiles []Profile, kind string) Profile {
	t.Helper()
	for _, p := range profiles {
		if p.Kind == kind {
			return p
		}
	}
	t.Fatalf("no %s profile in %d profiles", kind, len(profiles))
	return Profile{}
}

func TestRenderAppleIOS(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	profiles, err := RenderApple(p, PlatformIOS, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for _, pr := range profiles {
		kinds = append(kinds, pr.Kind)
	}
	if !slices.Equal(kinds, []string{ProfilePasscode, ProfileRestrictions, ProfileNotifications}) {
		t.Fatalf("kinds = %v", kinds)
	}

	pass := byKind(t, profiles, ProfilePasscode)
	doc := decodeProfile(t, pass.Bytes)
	if doc.PayloadType != "Configuration" || doc.PayloadIdentifier != "io.github.halemdm.policy.hipaa-texting.passcode" ||
		doc.PayloadUUID != pass.UUID || pass.Identifier != doc.PayloadIdentifier || doc.PayloadVersion != 1 || doc.PayloadOrganization != "Hale" {
		t.Errorf("passcode profile header = %+v", doc)
	}
	if doc.PayloadScope != "" {
		t.Errorf("iOS profile has PayloadScope %q", doc.PayloadScope)
	}
	pl := doc.PayloadContent[0]
	want := map[string]any{"PayloadType": PayloadTypePasscode, "forcePIN": true, "allowSimple": false,
		"minLength": uint64(6), "maxInactivity": uint64(5), "maxGracePeriod": uint64(0), "maxFailedAttempts": uint64(10)}
	checkKeys(t, pl, want)
	if _, ok := pl["requireAlphanumeric"]; ok {
		t.Error("requireAlphanumeric rendered though the policy leaves it false")
	}

	rest := byKind(t, profiles, ProfileRestrictions)
	checkKeys(t, decodeProfile(t, rest.Bytes).PayloadContent[0], map[string]any{
		"PayloadType":                      PayloadTypeRestrictions,
		"allowScreenShot":                  false,
		"allowRemoteScreenObservation":     false,
		"allowCloudBackup":                 false,
		"allowCloudDocumentSync":           false,
		"forceEncryptedBackup":             true,
		"allowLockScreenNotificationsView": false,
	})
	if _, ok := decodeProfile(t, rest.Bytes).PayloadContent[0]["allowCloudDesktopAndDocuments"]; ok {
		t.Error("macOS-only key rendered for iOS")
	}
	if !slices.Equal(rest.SupervisedOnly, []string{"allowCloudDocumentSync"}) || rest.RequiresSupervision {
		t.Errorf("restrictions supervision = %v %v", rest.SupervisedOnly, rest.RequiresSupervision)
	}

	notif := byKind(t, profiles, ProfileNotifications)
	if !notif.RequiresSupervision || !slices.Equal(notif.SupervisedOnly, []string{PayloadTypeNotifications}) {
		t.Errorf("notifications supervision = %v %v", notif.SupervisedOnly, notif.RequiresSupervision)
	}
	npl := decodeProfile(t, notif.Bytes).PayloadContent[0]
	items, _ := npl["NotificationSettings"].([]any)
	if len(items) != 1 {
		t.Fatalf("NotificationSettings = %#v", npl["NotificationSettings"])
	}
	checkKeys(t, items[0].(map[string]any), map[string]any{"BundleIdentifier": "com.example.securetext", "PreviewType": uint64(2)})

	// The unsupervised list RenderApple reports is the one evaluation uses.
	var all []string
	for _, pr := range profiles {
		all = append(all, pr.SupervisedOnly...)
	}
	if !slices.Equal(all, SupervisedOnlySettings(p, PlatformIOS)) {
		t.Errorf("render says %v, SupervisedOnlySettings says %v", all, SupervisedOnlySettings(p, PlatformIOS))
	}
}

func checkKeys(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("key %s missing (payload %v)", k, got)
			continue
		}
		if g != w {
			t.Errorf("key %s = %#v, want %#v", k, g, w)
		}
	}
	if _, isPayload := want["PayloadType"]; !isPayload {
		return
	}
	for _, k := range []string{"PayloadIdentifier", "PayloadUUID", "PayloadVersion", "PayloadDisplayName"} {
		if _, ok := got[k]; !ok {
			t.Errorf("payload lacks %s", k)
		}
	}
}

func TestRenderAppleMacOSFileVault(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	if _, err := RenderApple(p, PlatformMacOS, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "EscrowCertificate") {
		t.Fatalf("no escrow certificate: err = %v", err)
	}
	if _, err := RenderApple(p, PlatformMacOS, RenderOptions{EscrowCertificate: []byte("not a cert")}); err == nil {
		t.Fatal("garbage escrow certificate accepted")
	}
	cert := testEscrowCert(t)
	profiles, err := RenderApple(p, PlatformMacOS, RenderOptions{EscrowCertificate: cert, EscrowLocation: "Hale at example.org"})
	if err != nil {
		t.Fatal(err)
	}
	fv := byKind(t, profiles, ProfileFileVault)
	if !slices.Equal(fv.PayloadTypes, []string{PayloadTypeCertificate, PayloadTypeFileVault, PayloadTypeEscrow, PayloadTypeMCX}) {
		t.Fatalf("payload types = %v", fv.PayloadTypes)
	}
	doc := decodeProfile(t, fv.Bytes)
	if doc.PayloadScope != "System" {
		t.Errorf("PayloadScope = %q", doc.PayloadScope)
	}
	certPl, fvPl, escrowPl, mcxPl := doc.PayloadContent[0], doc.PayloadContent[1], doc.PayloadContent[2], doc.PayloadContent[3]
	if got, _ := certPl["PayloadContent"].([]byte); !bytes.Equal(got, cert) {
		t.Error("escrow certificate not embedded as data")
	}
	checkKeys(t, fvPl, map[string]any{"Enable": "On", "Defer": true, "ShowRecoveryKey": false})
	checkKeys(t, escrowPl, map[string]any{"Location": "Hale at example.org", "EncryptCertPayloadUUID": certPl["PayloadUUID"]})
	checkKeys(t, mcxPl, map[string]any{"dontAllowFDEDisable": true})

	rest := byKind(t, profiles, ProfileRestrictions)
	rpl := decodeProfile(t, rest.Bytes).PayloadContent[0]
	checkKeys(t, rpl, map[string]any{"allowScreenShot": false, "allowCloudDocumentSync": false, "allowCloudDesktopAndDocuments": false})
	for _, k := range []string{"allowCloudBackup", "forceEncryptedBackup", "allowLockScreenNotificationsView"} {
		if _, ok := rpl[k]; ok {
			t.Errorf("iOS-only key %s rendered for macOS", k)
		}
	}
	if len(rest.SupervisedOnly) != 0 {
		t.Errorf("macOS restrictions need no supervision, got %v", rest.SupervisedOnly)
	}
	notif := byKind(t, profiles, ProfileNotifications)
	items := decodeProfile(t, notif.Bytes).PayloadContent[0]["NotificationSettings"].([]any)
	item := items[0].(map[string]any)
	if _, ok := item["PreviewType"]; ok || item["ShowInLockScreen"] != false {
		t.Errorf("macOS notification item = %v", item)
	}
	if notif.RequiresSupervision {
		t.Error("macOS notifications do not need supervision")
	}
	pass := byKind(t, profiles, ProfilePasscode)
	if got := decodeProfile(t, pass.Bytes).PayloadContent[0]["maxInactivity"]; got != uint64(5) {
		t.Errorf("maxInactivity = %v", got)
	}
}

func TestRenderAppleClampsIOSInactivity(t *testing.T) {
	p, err := Parse([]byte("passcode: {required: true, max_inactivity_minutes: 30}"))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "long"
	for pl, want := range map[Platform]uint64{PlatformIOS: 15, PlatformMacOS: 30} {
		profiles, err := RenderApple(p, pl, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeProfile(t, profiles[0].Bytes).PayloadContent[0]["maxInactivity"]; got != want {
			t.Errorf("%s maxInactivity = %v, want %d", pl, got, want)
		}
	}
}

func TestRenderAppleDeterministic(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	a, err := RenderApple(p, PlatformIOS, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A policy parsed again, from its canonical JSON, renders the same bytes.
	p2, err := Parse(p.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	p2.Name = p.Name
	b, err := RenderApple(p2, PlatformIOS, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatal("different profile counts")
	}
	for i := range a {
		if !bytes.Equal(a[i].Bytes, b[i].Bytes) || a[i].UUID != b[i].UUID {
			t.Errorf("%s profile differs between renders", a[i].Kind)
		}
		golden := filepath.Join("testdata", "golden", "hipaa-texting-ios-"+a[i].Kind+".mobileconfig")
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, a[i].Bytes, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestRenderAppleDeterministic -update to create it)", err)
		}
		if !bytes.Equal(a[i].Bytes, want) {
			t.Errorf("%s profile differs from %s:\n%s", a[i].Kind, golden, a[i].Bytes)
		}
	}
}

func TestRenderAppleStableIdentity(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	a, _ := RenderApple(p, PlatformIOS, RenderOptions{})
	// Changed content keeps identifiers and UUIDs, so the new profile replaces the old one.
	p.Passcode.MinLength = 8
	b, _ := RenderApple(p, PlatformIOS, RenderOptions{})
	if a[0].UUID != b[0].UUID || a[0].Identifier != b[0].Identifier || bytes.Equal(a[0].Bytes, b[0].Bytes) {
		t.Error("content change must keep identity and change bytes")
	}
	// Another policy gets other identities.
	p.Name = "other"
	c, _ := RenderApple(p, PlatformIOS, RenderOptions{})
	if c[0].UUID == a[0].UUID || c[0].Identifier == a[0].Identifier {
		t.Error("different policies share a profile identity")
	}
	seen := map[string]bool{}
	for _, pr := range a {
		for _, pl := range decodeProfile(t, pr.Bytes).PayloadContent {
			u := pl["PayloadUUID"].(string)
			if seen[u] || u == pr.UUID {
				t.Errorf("UUID %s used twice", u)
			}
			seen[u] = true
		}
	}
}

type prefixSigner struct{ err error }

func (s prefixSigner) Sign(b []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	return append([]byte("SIGNED:"), b...), nil
}

func TestRenderAppleSigner(t *testing.T) {
	p := mustParseFixture(t, "byod.yaml")
	unsigned, err := RenderApple(p, PlatformIOS, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := RenderApple(p, PlatformIOS, RenderOptions{Signer: prefixSigner{}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range signed {
		if !signed[i].Signed || !bytes.Equal(signed[i].Bytes, append([]byte("SIGNED:"), unsigned[i].Bytes...)) {
			t.Errorf("%s: not signed over the unsigned bytes", signed[i].Kind)
		}
	}
	boom := errors.New("hsm offline")
	if _, err := RenderApple(p, PlatformIOS, RenderOptions{Signer: prefixSigner{err: boom}}); !errors.Is(err, boom) {
		t.Errorf("signer error = %v", err)
	}
}

func TestRenderAppleRefuses(t *testing.T) {
	p := mustParseFixture(t, "byod.yaml")
	if _, err := RenderApple(p, PlatformWindows, RenderOptions{}); err == nil {
		t.Error("rendered Apple profiles for Windows")
	}
	p.Name = ""
	if _, err := RenderApple(p, PlatformIOS, RenderOptions{}); err == nil {
		t.Error("rendered without a policy name")
	}
	if _, err := RenderApple(nil, PlatformIOS, RenderOptions{}); err == nil {
		t.Error("rendered a nil policy")
	}
	empty, _ := Parse([]byte("{}"))
	empty.Name = "empty"
	if got, err := RenderApple(empty, PlatformIOS, RenderOptions{}); err != nil || len(got) != 0 {
		t.Errorf("empty policy rendered %d profiles, %v", len(got), err)
	}
}

// What RenderApple produces is exactly what evaluation expects to find installed.
func TestRenderedProfilesSatisfyEvaluation(t *testing.T) {
	p := mustParseFixture(t, "hipaa-texting.yaml")
	cert := testEscrowCert(t)
	for _, pl := range []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS} {
		profiles, err := RenderApple(p, pl, RenderOptions{EscrowCertificate: cert})
		if err != nil {
			t.Fatal(err)
		}
		pos := compliantPosture(p, pl, t0)
		var installed []InstalledProfile
		for _, pr := range profiles {
			installed = append(installed, InstalledProfile{Identifier: pr.Identifier, UUID: pr.UUID})
		}
		pos.InstalledProfiles.Value = installed
		if v := Evaluate(p, pos, nil, t0); !v.Compliant {
			t.Errorf("%s: all rendered profiles installed, verdict %+v", pl, v.Reasons)
		}
		pos.InstalledProfiles.Value = installed[1:]
		if v := Evaluate(p, pos, nil, t0); v.Compliant || v.Reasons[0].Code != CodePolicyNotInstalled || v.Reasons[0].Detail != profiles[0].Identifier {
			t.Errorf("%s: first profile missing, verdict %+v", pl, v.Reasons)
		}
	}
}
