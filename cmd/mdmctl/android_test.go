package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/fakeamapi"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/android"
)

// mdmctl android bind, then enroll create --platform android --byod --qr: the enterprise is
// configured at the fake, and the QR code is a PNG on disk.
func TestAndroidBindAndEnroll(t *testing.T) {
	fake, err := fakeamapi.New("enterprises/LC0cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	e := newEnvWith(t, []mdmserver.Option{mdmserver.WithAndroidOptions(android.WithoutServiceAccountAuth())},
		func(c *mdmserver.Config) { c.AndroidAPIURL = fake.URL + "/" })
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	key, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p-1234", "client_email": "hale@p-1234.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": "https://oauth2.googleapis.com/token"})
	keyFile := filepath.Join(e.dir, "sa.json")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	admin := e.as(e.admin)
	r := admin.ok(t, "android", "bind", "--enterprise", "enterprises/LC0cli", "--topic", "projects/p-1234/topics/amapi", "--key", keyFile)
	if !strings.Contains(r.stdout, "hale@p-1234.iam.gserviceaccount.com") || !strings.Contains(r.stdout, "/android/pubsub") {
		t.Errorf("bind printed %q", r.stdout)
	}
	if fake.Enterprise("enterprises/LC0cli")["pubsubTopic"] != "projects/p-1234/topics/amapi" {
		t.Error("topic not set at the enterprise")
	}
	admin.ok(t, "android", "status")
	if r := admin.ok(t, "android", "signup", "--key", keyFile); !strings.Contains(r.stdout, "signupUrls/") || !strings.Contains(r.stdout, android.SignupPath) {
		t.Errorf("signup printed %q", r.stdout)
	}
	admin.fails(t, 2, "android", "bind", "--topic", "projects/p-1234/topics/amapi", "--key", keyFile)

	qr := filepath.Join(e.dir, "enroll.png")
	it := e.as(e.token("it"))
	r = it.ok(t, "enroll", "create", "--owner", "dr.ito", "--group", "er", "--platform", "android", "--byod", "--qr", qr)
	if !strings.Contains(r.stdout, android.EnrollLinkBase) || !strings.Contains(r.stdout, "hale-none-work-profile") {
		t.Errorf("enroll printed %q", r.stdout)
	}
	f, err := os.Open(qr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("QR file: %v", err)
	}
	it.fails(t, 2, "enroll", "create", "--owner", "x", "--group", "g", "--platform", "apple", "--byod")
	if v := fake.Violations(); len(v) > 0 {
		t.Error(v)
	}
}
