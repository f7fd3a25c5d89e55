package pushcert

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/seal"
)

func TestKeySealedAtRest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	s, err := New(db, key)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "com.apple.mgmt.External.test"
	certPEM, keyPEM, _ := fakeapns.GeneratePushCert(topic, time.Hour)
	info, err := s.Upload(ctx, certPEM, keyPEM)
	if err != nil || info.Topic != topic {
		t.Fatalf("upload: %+v %v", info, err)
	}
	cert, token, err := s.RetrievePushCert(ctx, topic)
	if err != nil || cert == nil || token == "" {
		t.Fatalf("retrieve: %v", err)
	}
	if stale, _ := s.IsPushCertStale(ctx, topic, token); stale {
		t.Fatal("fresh token reported stale")
	}
	s.Upload(ctx, certPEM, keyPEM)
	if stale, _ := s.IsPushCertStale(ctx, topic, token); !stale {
		t.Fatal("token not stale after a new upload")
	}
	if _, err := s.Upload(ctx, certPEM, []byte("not a key")); err == nil {
		t.Fatal("mismatched key accepted")
	}
	db.Close()

	// The file holds no private key in clear, and another master key cannot open it.
	raw, _ := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	defer raw.Close()
	raw.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			if bytes.Contains(v, []byte("PRIVATE KEY")) {
				t.Error("push key stored in clear")
			}
			return nil
		})
	})
	other, _ := seal.New(bytes.Repeat([]byte{2}, seal.KeySize))
	s2 := &Store{db: raw, key: other}
	if _, _, err := s2.RetrievePushCert(ctx, topic); err == nil {
		t.Fatal("push key opened with another master key")
	}
	if _, _, err := s2.RetrievePushCert(ctx, "com.apple.mgmt.unknown"); err != ErrNotFound {
		t.Fatalf("unknown topic: %v", err)
	}
}
