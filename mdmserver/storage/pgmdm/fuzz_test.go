package pgmdm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/seal"
	"github.com/micromdm/nanomdm/mdm"
)

func fuzzStorage(f *testing.F) *Storage {
	f.Helper()
	k, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	return &Storage{sealer: k}
}

// FuzzOpenBody: whatever the commands table holds, opening it never panics, and with a sealer
// only a sealed envelope that opens for its UUID yields a body.
func FuzzOpenBody(f *testing.F) {
	s := fuzzStorage(f)
	sealed := s.sealBody("U1", []byte(`<?xml version="1.0"?><plist><dict/></plist>`))
	f.Add(sealed)
	f.Add([]byte(`<?xml version="1.0"?><plist><dict/></plist>`))
	f.Add([]byte(envelopePrefix + envelopeSuffix))
	f.Add([]byte(envelopePrefix + "AAAA"))
	f.Add(sealed[:len(sealed)-3])
	f.Fuzz(func(t *testing.T, stored []byte) {
		plain, err := s.openBody("U1", stored)
		if err == nil && !bytes.HasPrefix(stored, []byte(envelopePrefix)) {
			t.Fatalf("a body not in an envelope opened: %q", plain)
		}
		clear := &Storage{}
		if plain, err := clear.openBody("U1", stored); err == nil && bytes.HasPrefix(stored, []byte(envelopePrefix)) {
			t.Fatalf("a sealed envelope was passed through without a sealer: %q", plain)
		}
	})
}

// FuzzSealRoundTrip: any body comes back as it went in, only under its own UUID, and the stored
// form passes the schema's CHECK yet is never taken for a command plist.
func FuzzSealRoundTrip(f *testing.F) {
	s := fuzzStorage(f)
	f.Add("LOCK-1", []byte(`<?xml version="1.0"?><plist><dict><key>PIN</key><string>123456</string></dict></plist>`))
	f.Add("", []byte{})
	f.Add("A", []byte(envelopePrefix))
	f.Fuzz(func(t *testing.T, uuid string, plain []byte) {
		stored := s.sealBody(uuid, plain)
		if !strings.HasPrefix(string(stored), "<?xml") {
			t.Fatalf("stored form fails the schema's check: %q", stored)
		}
		if _, err := mdm.DecodeCommand(stored); err == nil {
			t.Fatal("nanomdm decodes a sealed envelope as a command")
		}
		got, err := s.openBody(uuid, stored)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
		if _, err := s.openBody(uuid+"x", stored); err == nil {
			t.Fatal("a body opened under another command's UUID")
		}
	})
}
