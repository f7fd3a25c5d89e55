package seal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := LoadOrCreate(filepath.Join(t.TempDir(), "sub", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("-----BEGIN EC PRIVATE KEY-----")
	sealed := k.Seal("ca/root.key", secret)
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := k.Open("ca/root.key", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open("apns/push.key", sealed); err != ErrOpen {
		t.Errorf("open under another purpose: err = %v, want ErrOpen", err)
	}
	for i := range sealed {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 1
		if _, err := k.Open("ca/root.key", tampered); err != ErrOpen {
			t.Fatalf("flipped byte %d: err = %v, want ErrOpen", i, err)
		}
	}
	other, _ := New(bytes.Repeat([]byte{7}, KeySize))
	if _, err := other.Open("ca/root.key", sealed); err != ErrOpen {
		t.Errorf("open with another key: err = %v", err)
	}
	for _, short := range [][]byte{nil, {version}, sealed[:10]} {
		if _, err := k.Open("ca/root.key", short); err != ErrOpen {
			t.Errorf("short input %d bytes: err = %v", len(short), err)
		}
	}
}

func TestLoadOrCreateReusesAndChecksMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	k1, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	k2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open("p", k1.Seal("p", []byte("x"))); err != nil {
		t.Fatal("reloaded key does not open what the first sealed")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
}

func TestParse(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, KeySize)
	for _, s := range []string{
		strings.Repeat("ab", KeySize),
		"  " + strings.Repeat("AB", KeySize) + "\n",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
	} {
		k, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if k.key != [KeySize]byte(raw) {
			t.Fatalf("Parse(%q) gave another key", s)
		}
	}
	for _, bad := range []string{"", "abcd", strings.Repeat("ab", KeySize+1), "not a key at all"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestLoadNeverCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load created %s: %v", path, err)
	}
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open("p", k.Seal("p", []byte("x"))); err != nil {
		t.Fatal("Load read another key than LoadOrCreate made")
	}
}

func TestDerive(t *testing.T) {
	a, _ := New(make([]byte, KeySize))
	kb := make([]byte, KeySize)
	kb[0] = 1
	b, _ := New(kb)
	if !bytes.Equal(a.Derive("x"), a.Derive("x")) || bytes.Equal(a.Derive("x"), a.Derive("y")) ||
		bytes.Equal(a.Derive("x"), b.Derive("x")) || len(a.Derive("x")) != 32 {
		t.Fatal("Derive is not a deterministic per-purpose, per-key 32-byte key")
	}
}
