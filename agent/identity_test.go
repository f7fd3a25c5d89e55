package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/agent/state"
)

func TestEnrollFingerprint(t *testing.T) {
	f := newFakeServer(t)
	t.Run("match writes a private identity", func(t *testing.T) {
		store, id := enrollDevice(t, f, "tok-1")
		if id.DeviceID == "" || id.ServerURL != f.URL() || id.CAFingerprint != f.fingerprint() {
			t.Fatalf("identity %+v", id)
		}
		for _, name := range []string{state.KeyFile, state.CertFile, state.CAFile, state.IdentityFile} {
			fi, err := os.Stat(store.Path(name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
			}
		}
		if fi, _ := os.Stat(store.Dir()); fi.Mode().Perm() != 0o700 {
			t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
		}
		// Re-enrolling refuses without --force and keeps the identity.
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-2", CAFingerprint: f.fingerprint()})
		if err == nil || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("re-enroll without force: %v", err)
		}
		keyBefore, _ := store.ReadFile(state.KeyFile)
		id2, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-2", CAFingerprint: strings.ToUpper(colons(f.fingerprint())), Force: true})
		if err != nil {
			t.Fatalf("re-enroll with force: %v", err)
		}
		keyAfter, _ := store.ReadFile(state.KeyFile)
		if id2.DeviceID == id.DeviceID || string(keyBefore) == string(keyAfter) {
			t.Fatal("force did not create a new identity and key")
		}
		// The used token is refused.
		other, _ := state.Open(t.TempDir())
		_, err = Enroll(context.Background(), other, EnrollConfig{ServerURL: f.URL(), Token: "tok-1", CAFingerprint: f.fingerprint()})
		if err == nil || problemStatus(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "refused the enrollment token") {
			t.Fatalf("used token: %v", err)
		}
	})
	t.Run("mismatch refuses and writes nothing", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		wrong := strings.Repeat("ab", 32)
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", CAFingerprint: wrong})
		if err == nil || !strings.Contains(err.Error(), "fingerprint") {
			t.Fatalf("mismatch: %v", err)
		}
		if store.Enrolled() {
			t.Fatal("identity written after a fingerprint mismatch")
		}
		if _, err := os.Stat(store.Path(state.KeyFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("key written after a fingerprint mismatch")
		}
		f.mu.Lock()
		unused := f.tokens["tok-3"]
		f.mu.Unlock()
		if !unused {
			t.Fatal("the token was spent although the agent refused the server")
		}
	})
	t.Run("no fingerprint needs the system roots", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		_, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", SystemRoots: x509.NewCertPool()})
		if err == nil || !strings.Contains(err.Error(), "--ca-fingerprint") {
			t.Fatalf("untrusted server without fingerprint: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(f.ca.root)
		id, err := Enroll(context.Background(), store, EnrollConfig{ServerURL: f.URL(), Token: "tok-3", SystemRoots: roots})
		if err != nil {
			t.Fatalf("trusted server: %v", err)
		}
		if id.CAFingerprint != f.fingerprint() {
			t.Fatal("pinned something other than the server CA")
		}
	})
	t.Run("bad input", func(t *testing.T) {
		store, _ := state.Open(t.TempDir())
		for _, c := range []EnrollConfig{
			{ServerURL: "http://x", Token: "t"},
			{ServerURL: f.URL(), Token: ""},
			{ServerURL: f.URL(), Token: "t", CAFingerprint: "abc"},
		} {
			if _, err := Enroll(context.Background(), store, c); err == nil {
				t.Errorf("%+v: no error", c)
			}
		}
	})
}

func colons(hex string) string {
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestRenewal(t *testing.T) {
	f := newFakeServer(t)
	f.set(func(f *fakeServer) { f.certLife = 1500 * time.Millisecond })
	store, _ := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { f.certLife = time.Hour })
	a := newAgent(t, store, (&counterCollector{}).collect)
	oldSerial := a.Certificate().Leaf.SerialNumber.String()
	var renewed atomic.Bool
	a.observer = func(e Event) {
		if e.Kind == "renewed" {
			renewed.Store(true)
		}
	}
	start(t, a)
	eventually(t, 5*time.Second, "renewal", renewed.Load)
	newLeaf := a.Certificate().Leaf
	if newLeaf.SerialNumber.String() == oldSerial || time.Until(newLeaf.NotAfter) < 30*time.Minute {
		t.Fatal("certificate not replaced")
	}
	b, _ := store.ReadFile(state.CertFile)
	certs, err := state.ParseChain(b)
	if err != nil || certs[0].SerialNumber.Cmp(newLeaf.SerialNumber) != 0 {
		t.Fatal("renewed certificate not persisted")
	}
	// Traffic after renewal presents the new certificate (the old one has expired by then).
	time.Sleep(1600 * time.Millisecond)
	n := len(f.reportsCopy())
	eventually(t, 5*time.Second, "a report with the new certificate", func() bool {
		reps := f.reportsCopy()
		return len(reps) > n && reps[len(reps)-1].serial == newLeaf.SerialNumber.String()
	})
}

func TestNewRefusesTamperedCA(t *testing.T) {
	f := newFakeServer(t)
	store, _ := enrollDevice(t, f, "tok-1")
	other := newTestCA(t)
	if err := store.WriteFile(state.CAFile, []byte(pemOf(other.root))); err != nil {
		t.Fatal(err)
	}
	if _, err := New(store, (&counterCollector{}).collect); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("New with a swapped CA: %v", err)
	}
}

func TestPinnedTLSRefusesOtherServer(t *testing.T) {
	f := newFakeServer(t)
	g := newFakeServer(t) // another CA
	store, _ := enrollDevice(t, f, "tok-1")
	id, _ := store.LoadIdentity()
	id.ServerURL = g.URL()
	if err := store.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, store, (&counterCollector{}).collect)
	var nr nonceResponse
	err := a.client.do(context.Background(), time.Second, http.MethodGet, "/agent/v1/nonce", nil, &nr)
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("talking to a server of another CA: %v, want a verification error", err)
	}
}

func TestRevokedDeviceKeepsRunningAndRecovers(t *testing.T) {
	f := newFakeServer(t)
	store, id := enrollDevice(t, f, "tok-1")
	f.set(func(f *fakeServer) { delete(f.devices, id.DeviceID) }) // 403 device-unknown
	var failed atomic.Int64
	a := newAgent(t, store, (&counterCollector{}).collect, WithObserver(func(e Event) {
		if e.Kind == "report-failed" && strings.Contains(e.Err.Error(), "refused this device's certificate") {
			failed.Add(1)
		}
	}))
	r := start(t, a)
	eventually(t, 5*time.Second, "refused reports", func() bool { return failed.Load() >= 3 })
	select {
	case <-r.done:
		t.Fatalf("a refused certificate stopped the agent: %v", r.err)
	default:
	}
	f.set(func(f *fakeServer) { f.devices[id.DeviceID] = true })
	eventually(t, 5*time.Second, "a report once the device is known again", func() bool { return len(f.reportsCopy()) > 0 })
}
