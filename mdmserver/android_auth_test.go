package mdmserver_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/fakeamapi"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/android"
)

// The production path: the server authenticates to AMAPI with the service account key it keeps
// sealed (an OAuth JWT bearer grant at the key's token_uri, or a self-signed JWT), and a key
// the enterprise's project does not trust is refused at binding.
func TestAndroidServiceAccountAuth(t *testing.T) {
	fake, err := fakeamapi.New(testEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	env := newTestEnvWith(t, nil, func(c *mdmserver.Config) { c.AndroidAPIURL = fake.URL + "/" })
	keyFile := func(email string, k *rsa.PrivateKey) json.RawMessage {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		b, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "hale-test", "private_key_id": "k1",
			"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "client_email": email,
			"client_id": "1", "token_uri": fake.TokenURL()})
		return b
	}
	trusted, _ := rsa.GenerateKey(rand.Reader, 2048)
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	const email = "hale-amapi@hale-test.iam.gserviceaccount.com"
	fake.RequireServiceAccount(email, &trusted.PublicKey)

	bind := func(key json.RawMessage) int {
		body, _ := json.Marshal(api.AndroidBindRequest{Enterprise: testEnterprise, Topic: "projects/hale-test/topics/amapi", ServiceAccountKey: key})
		return env.call("PUT", "/api/v1/android/binding", env.Admin, body, nil)
	}
	if code := bind(keyFile(email, stranger)); code != 502 {
		t.Fatalf("bind with an untrusted key: %d, want 502", code)
	}
	if code := env.call("GET", "/api/v1/android/binding", env.Admin, nil, nil); code != 404 {
		t.Fatalf("a refused binding was stored: %d", code)
	}
	if code := bind(keyFile(email, trusted)); code != 200 {
		t.Fatalf("bind: %d", code)
	}
	// A new server process unseals the key and authenticates with it.
	env.Restart()
	var e api.NewEnrollment
	if code := env.call("POST", "/api/v1/enrollments", env.Admin, []byte(`{"owner":"o","group":"g","platform":"android"}`), &e); code != 201 || e.Android == nil {
		t.Fatalf("enroll after restart: %d", code)
	}
	if v := fake.Violations(); len(v) > 0 {
		t.Error(v)
	}
}

// The signup flow: a signup URL for the service account's project, the administrator completes
// it at Google, the callback page shows the enterprise token, and the binding creates the
// enterprise with its notifications configured.
func TestAndroidSignup(t *testing.T) {
	fake, err := fakeamapi.New(testEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	env := newTestEnvWith(t, []mdmserver.Option{mdmserver.WithAndroidOptions(android.WithoutServiceAccountAuth())},
		func(c *mdmserver.Config) { c.AndroidAPIURL = fake.URL + "/" })
	key := serviceAccountKey(t)
	body, _ := json.Marshal(api.AndroidSignupRequest{ServiceAccountKey: key, AdminEmail: "it@hospital.example"})
	var su api.AndroidSignup
	if code := env.call("POST", "/api/v1/android/signup", env.Admin, body, &su); code != 200 || !strings.HasPrefix(su.URL, "https://") ||
		su.CallbackURL != env.PublicURL+android.SignupPath {
		t.Fatalf("signup: %d %+v", code, su)
	}
	cb, err := fake.CompleteSignup(su.Name)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	resp, err := env.Client.Get(env.URL + u.RequestURI())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := u.Query().Get("enterpriseToken")
	if resp.StatusCode != 200 || !strings.Contains(string(page), token) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("callback page: %d %q", resp.StatusCode, page)
	}
	if resp, err := env.Client.Get(env.URL + android.SignupPath + "?enterpriseToken=%3Cscript%3E"); err != nil || resp.StatusCode != 400 {
		t.Errorf("callback with a crafted token: %v %v", resp, err)
	}
	bind := func(token string) (int, api.AndroidBinding) {
		body, _ := json.Marshal(api.AndroidBindRequest{SignupURLName: su.Name, EnterpriseToken: token,
			Topic: "projects/hale-test/topics/amapi", ServiceAccountKey: key})
		var b api.AndroidBinding
		return env.call("PUT", "/api/v1/android/binding", env.Admin, body, &b), b
	}
	if code, _ := bind("wrong-token"); code != 502 {
		t.Errorf("bind with a wrong enterprise token: %d", code)
	}
	code, b := bind(token)
	if code != 200 || !strings.HasPrefix(b.Enterprise, "enterprises/LC") || b.Enterprise == testEnterprise {
		t.Fatalf("bind after signup: %d %+v", code, b)
	}
	if ent := fake.Enterprise(b.Enterprise); ent["pubsubTopic"] != "projects/hale-test/topics/amapi" {
		t.Errorf("created enterprise %v", ent)
	}
	if v := fake.Violations(); len(v) > 0 {
		t.Error(v)
	}
}
