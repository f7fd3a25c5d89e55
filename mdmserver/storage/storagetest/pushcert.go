package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testPushCerts is the contract of pushcert.Repository, and the push certificate service over
// it: keys sealed at rest, a stale token that changes with every upload.
func testPushCerts(t *testing.T, open Opener) {
	t.Run("contract", func(t *testing.T) { pushCertsContract(t, open) })
	t.Run("key sealed at rest", func(t *testing.T) { pushCertsSealed(t, open) })
	t.Run("reopen", func(t *testing.T) { pushCertsReopen(t, open) })
}

// pushCertService is the push certificate service on st, its keys sealed with the key made of
// byte b.
func pushCertService(t *testing.T, st storage.Store, b byte) *pushcert.Service {
	return pushcert.NewService(storage.Scope(st, func(tx storage.Tx) pushcert.Tx { return tx }), sealKeyOf(t, b))
}

func pushCertsContract(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := pushcert.StoredCert{Info: pushcert.Info{Topic: "com.apple.mgmt.b", NotAfter: t0.Add(time.Hour), Subject: "CN=b", UploadedAt: t0},
		CertPEM: []byte("cert b"), SealedKey: []byte("sealed b"), StaleToken: "tok-b"}
	a := pushcert.StoredCert{Info: pushcert.Info{Topic: "com.apple.mgmt.a", NotAfter: t0, Subject: "CN=a", UploadedAt: t0},
		CertPEM: []byte("cert a"), SealedKey: []byte("sealed a"), StaleToken: "tok-a"}
	err := st.Update(ctx, func(tx storage.Tx) error {
		for _, c := range []pushcert.StoredCert{b, a} {
			if err := tx.PushCerts().PutCert(ctx, &c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.PushCerts()
		got, err := r.Cert(ctx, b.Topic)
		if err != nil || !sameJSON(got, b) || !bytes.Equal(got.SealedKey, b.SealedKey) || !bytes.Equal(got.CertPEM, b.CertPEM) {
			t.Errorf("Cert = %+v, %v; want %+v", got, err, b)
		}
		got.SealedKey[0] = 'X' // the caller's copy
		if again, _ := r.Cert(ctx, b.Topic); again.SealedKey[0] != 's' {
			t.Error("changing a returned certificate changed the stored one")
		}
		if _, err := r.Cert(ctx, "com.apple.mgmt.none"); !errors.Is(err, pushcert.ErrNotFound) {
			t.Errorf("Cert of an unknown topic: %v, want ErrNotFound", err)
		}
		all, err := r.Certs(ctx)
		if err != nil || len(all) != 2 || all[0].Topic != a.Topic || all[1].Topic != b.Topic {
			t.Errorf("Certs = %+v, %v; want a, b in topic order", all, err)
		}
		if err := r.PutCert(ctx, &a); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutCert in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The private key is stored sealed; the stale token changes with each upload; another master
// key cannot open the key; an unknown topic is ErrNotFound itself (nanomdm compares it).
func pushCertsSealed(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	s := pushCertService(t, st, 1)
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
	if list, err := s.List(ctx); err != nil || len(list) != 1 || list[0].Topic != topic {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// The store holds no private key in clear, and another master key cannot open it.
	err = st.View(ctx, func(tx storage.Tx) error {
		all, err := tx.PushCerts().Certs(ctx)
		for _, c := range all {
			for _, v := range [][]byte{c.CertPEM, c.SealedKey, []byte(c.StaleToken)} {
				if bytes.Contains(v, []byte("PRIVATE KEY")) {
					t.Error("push key stored in clear")
				}
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s2 := pushCertService(t, st, 2)
	if _, _, err := s2.RetrievePushCert(ctx, topic); err == nil {
		t.Fatal("push key opened with another master key")
	}
	if _, _, err := s2.RetrievePushCert(ctx, "com.apple.mgmt.unknown"); err != pushcert.ErrNotFound {
		t.Fatalf("unknown topic: %v", err)
	}
}

// An uploaded certificate is there, and opens, after a reopen.
func pushCertsReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	const topic = "com.apple.mgmt.External.reopen"
	certPEM, keyPEM, _ := fakeapns.GeneratePushCert(topic, time.Hour)
	if _, err := pushCertService(t, st, 1).Upload(ctx, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	_, token, err := pushCertService(t, st, 1).RetrievePushCert(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	s := pushCertService(t, st, 1)
	if cert, again, err := s.RetrievePushCert(ctx, topic); err != nil || cert == nil || again != token {
		t.Fatalf("after reopen: %v, token %q was %q", err, again, token)
	}
}
