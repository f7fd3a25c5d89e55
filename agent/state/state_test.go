package state

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testIdentity() *Identity {
	return &Identity{DeviceID: "d_0123456789abcdef", ServerURL: "https://mdm.example.org:8443",
		CAFingerprint: strings.Repeat("ab", 32), EnrolledAt: time.Now().UTC(), ReportInterval: time.Minute}
}

func TestStoreRoundTripAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "st")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v: Open must tighten it to 0700", fi.Mode().Perm())
	}
	if s.Enrolled() {
		t.Fatal("empty store enrolled")
	}
	if _, err := s.LoadIdentity(); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("LoadIdentity on empty store: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := s.SaveKey(key); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadKey()
	if err != nil || !got.Equal(key) {
		t.Fatalf("key round trip: %v", err)
	}
	id := testIdentity()
	if err := s.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	back, err := s.LoadIdentity()
	if err != nil || back.DeviceID != id.DeviceID || back.ReportInterval != time.Minute {
		t.Fatalf("identity round trip: %+v %v", back, err)
	}
	for _, name := range []string{KeyFile, IdentityFile} {
		if fi, _ := os.Stat(s.Path(name)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", name, fi.Mode().Perm())
		}
	}
	// No temporary files are left behind.
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.Contains(de.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", de.Name())
		}
	}
	if err := s.SaveSequence(41); err != nil {
		t.Fatal(err)
	}
	if n, err := s.LoadSequence(); err != nil || n != 41 {
		t.Fatalf("sequence %d %v", n, err)
	}
	bad := testIdentity()
	bad.ServerURL = "http://plain"
	if err := s.SaveIdentity(bad); err == nil {
		t.Fatal("an http server URL was saved")
	}
	if err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("purge left the directory")
	}
}

func TestJournal(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.Entry("c_1"); e != nil || err != nil {
		t.Fatalf("unknown entry: %v %v", e, err)
	}
	if err := s.Record(&Entry{ID: "../escape", Phase: PhaseStarted}); err == nil {
		t.Fatal("a path-like command ID was journaled")
	}
	now := time.Now()
	for i, ph := range []Phase{PhaseStarted, PhaseDone, PhaseReported} {
		e := &Entry{ID: "c_" + string(rune('a'+i)), Type: "lock", Phase: ph, UpdatedAt: now.Add(time.Duration(i) * time.Second)}
		if ph != PhaseStarted {
			e.Result = &Result{Status: "done", FinishedAt: now}
		}
		if err := s.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	un, errs := s.Unreported()
	if len(errs) != 0 || len(un) != 2 || un[0].ID != "c_a" || un[1].ID != "c_b" {
		t.Fatalf("unreported %v %v", un, errs)
	}
	// A corrupt entry is reported, not fatal.
	if err := os.WriteFile(filepath.Join(s.Dir(), CommandsDir, "c_z.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs := s.Entries(); len(errs) != 1 {
		t.Fatalf("corrupt entry errors %v", errs)
	}
}

func TestJournalPrune(t *testing.T) {
	s, _ := Open(t.TempDir())
	now := time.Now()
	for i := range maxJournal + 10 {
		e := &Entry{ID: "c_" + strings.Repeat("x", 1) + itoa(i), Type: "lock", Phase: PhaseReported,
			Result: &Result{Status: "done"}, UpdatedAt: now.Add(time.Duration(i) * time.Millisecond)}
		if err := s.Record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	es, _ := s.Entries()
	if len(es) != maxJournal || es[0].ID != "c_x10" {
		t.Fatalf("after prune: %d entries, oldest %s", len(es), es[0].ID)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func FuzzDecodeIdentity(f *testing.F) {
	f.Add([]byte(`{"version":1,"device_id":"d_1","server_url":"https://x","ca_fingerprint":"` + strings.Repeat("a", 64) + `"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"device_id":"../../x","server_url":"https://x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := DecodeIdentity(b)
		if err != nil {
			return
		}
		if !ValidID(id.DeviceID) || !strings.HasPrefix(id.ServerURL, "https://") || len(id.CAFingerprint) != 64 {
			t.Fatalf("invalid identity accepted: %+v", id)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte(`{"id":"c_1","type":"lock","phase":"started"}`))
	f.Add([]byte(`{"id":"c_1","type":"wipe","phase":"done","unenroll":true,"result":{"status":"done","removed":["/a"]}}`))
	f.Add([]byte(`{"id":"c_1","phase":"reported"}`))
	f.Add([]byte(`{"id":"c/1","phase":"started"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		if !ValidID(e.ID) {
			t.Fatalf("unsafe ID %q", e.ID)
		}
		if e.Phase != PhaseStarted && (e.Result == nil || (e.Result.Status != "done" && e.Result.Status != "failed")) {
			t.Fatalf("entry %s without a valid result accepted", e.Phase)
		}
	})
}

func FuzzDecodeKeyAndChain(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := f.TempDir()
	s, _ := Open(dir)
	_ = s.SaveKey(key)
	b, _ := s.ReadFile(KeyFile)
	f.Add(b)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeKey(b)
		if certs, err := ParseChain(b); err == nil && (len(certs) == 0 || len(certs) > 8) {
			t.Fatalf("chain of %d certificates accepted", len(certs))
		}
	})
}
