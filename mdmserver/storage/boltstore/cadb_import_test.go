package boltstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/smallstep/nosql"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// oldDataDir makes a data directory as Hale left it before the CA's database moved into
// hale.db: DATA/ca with the CA and its own DATA/ca/ca.db (smallstep's bbolt driver, as
// certs.Open used to open it), holding one revoked and one valid certificate.
func oldDataDir(t *testing.T, key *seal.Key) (dir string, revoked, valid *x509.Certificate) {
	t.Helper()
	dir = t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := nosql.New(nosql.BBoltDriver, filepath.Join(caDir, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ca, err := certs.Open(caDir, key, certs.WithDB(d))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	revoked, valid = issue(t, ca, "d_revoked"), issue(t, ca, "d_valid")
	if err := ca.Revoke(context.Background(), revoked.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	return dir, revoked, valid
}

// issue has ca sign an agent identity for deviceID.
func issue(t *testing.T, ca *certs.Authority, deviceID string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: deviceID}}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.Sign(context.Background(), csr, certs.Profile{Kind: certs.KindAgent, DeviceID: deviceID})
	if err != nil {
		t.Fatal(err)
	}
	return chain[0]
}

func masterKey(t *testing.T) *seal.Key {
	t.Helper()
	b := make([]byte, seal.KeySize)
	rand.Read(b)
	k, err := seal.New(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// crlSerials returns the serials ca's CRL lists.
func crlSerials(t *testing.T, ca *certs.Authority) map[string]bool {
	t.Helper()
	der, err := ca.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		out[e.SerialNumber.String()] = true
	}
	return out
}

// A revocation made in an old DATA/ca/ca.db survives the move into hale.db, through a restart;
// the old file is renamed, and a second start finds nothing to move.
func TestImportCADBKeepsRevocations(t *testing.T) {
	key := masterKey(t)
	dir, revoked, valid := oldDataDir(t, key)
	caDir, caFile := filepath.Join(dir, "ca"), filepath.Join(dir, "ca", "ca.db")
	path := filepath.Join(dir, "hale.db")

	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := st.ImportCADB(caFile); err != nil || !moved {
		t.Fatalf("ImportCADB = %v, %v", moved, err)
	}
	if _, err := os.Stat(caFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s is still there: %v", caFile, err)
	}
	if _, err := os.Stat(caFile + boltstore.MigratedSuffix); err != nil {
		t.Errorf("the old file was not kept as %s: %v", caFile+boltstore.MigratedSuffix, err)
	}
	ca, err := certs.Open(caDir, key, certs.WithDB(st.CADB()))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := ca.IsRevoked(revoked.SerialNumber); !ok {
		t.Error("the revoked certificate is not revoked after the move")
	}
	if ok, _ := ca.IsRevoked(valid.SerialNumber); ok {
		t.Error("the valid certificate is revoked after the move")
	}
	if crl := crlSerials(t, ca); !crl[revoked.SerialNumber.String()] || len(crl) != 1 {
		t.Errorf("CRL after the move lists %v, want only %s", crl, revoked.SerialNumber)
	}
	// The certificates it issued before are known: a later revocation of one works.
	if err := ca.Revoke(context.Background(), valid.SerialNumber, "superseded"); err != nil {
		t.Fatalf("revoking a certificate issued before the move: %v", err)
	}
	ca.Close()
	st.Close()

	st, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if moved, err := st.ImportCADB(caFile); err != nil || moved {
		t.Fatalf("second ImportCADB = %v, %v; want nothing to move", moved, err)
	}
	ca, err = certs.Open(caDir, key, certs.WithDB(st.CADB()))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	for _, c := range []*x509.Certificate{revoked, valid} {
		if ok, _ := ca.IsRevoked(c.SerialNumber); !ok {
			t.Errorf("%s is not revoked after a restart", c.Subject.CommonName)
		}
	}
	if err := st.Check(); err != nil {
		t.Error(err)
	}
}

// A start that stopped after the copy committed and before the rename finds the file again: it
// renames it without copying it over what the CA wrote since.
func TestImportCADBAfterInterruptedRename(t *testing.T) {
	key := masterKey(t)
	dir, _, valid := oldDataDir(t, key)
	caDir, caFile := filepath.Join(dir, "ca"), filepath.Join(dir, "ca", "ca.db")
	st, err := boltstore.Open(filepath.Join(dir, "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportCADB(caFile); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.Open(caDir, key, certs.WithDB(st.CADB()))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(context.Background(), valid.SerialNumber, "superseded"); err != nil {
		t.Fatal(err)
	}
	ca.Close()
	crlBefore, err := st.CADB().Get([]byte("x509_crl"), []byte("crl"))
	if err != nil {
		t.Fatal(err)
	}
	// As if the rename had not reached the disk.
	if err := os.Rename(caFile+boltstore.MigratedSuffix, caFile); err != nil {
		t.Fatal(err)
	}
	if moved, err := st.ImportCADB(caFile); err != nil || !moved {
		t.Fatalf("ImportCADB = %v, %v", moved, err)
	}
	if crl, _ := st.CADB().Get([]byte("x509_crl"), []byte("crl")); string(crl) != string(crlBefore) {
		t.Error("the old file was copied again over the CRL written since")
	}
	if _, err := os.Stat(caFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s is still there: %v", caFile, err)
	}
}

// A file that cannot be moved stops the start, and stays: a file that is not a database, and a
// file beside a store whose CA started on it already.
func TestImportCADBRefuses(t *testing.T) {
	t.Run("damaged file", func(t *testing.T) {
		dir := t.TempDir()
		caFile := filepath.Join(dir, "ca.db")
		if err := os.WriteFile(caFile, []byte("not a bbolt file, but long enough to look like one at first sight........"), 0o600); err != nil {
			t.Fatal(err)
		}
		st := openStore(t)
		if moved, err := st.ImportCADB(caFile); err == nil || moved {
			t.Fatalf("ImportCADB of a damaged file = %v, %v", moved, err)
		}
		if _, err := os.Stat(caFile); err != nil {
			t.Errorf("the file that failed to move is gone: %v", err)
		}
	})
	t.Run("store has a CA already", func(t *testing.T) {
		key := masterKey(t)
		dir, _, _ := oldDataDir(t, key)
		caFile := filepath.Join(dir, "ca", "ca.db")
		st := openStore(t)
		ca, err := certs.Open(t.TempDir(), key, certs.WithDB(st.CADB()))
		if err != nil {
			t.Fatal(err)
		}
		issue(t, ca, "d_new")
		ca.Close()
		if moved, err := st.ImportCADB(caFile); err == nil || moved {
			t.Fatalf("ImportCADB beside a CA database = %v, %v", moved, err)
		}
		if _, err := os.Stat(caFile); err != nil {
			t.Errorf("the file that failed to move is gone: %v", err)
		}
	})
}
