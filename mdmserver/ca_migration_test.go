package mdmserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smallstep/nosql"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// A data directory from before the CA's database moved into hale.db, with a revoked
// certificate in DATA/ca/ca.db: the server moves the database in at start, the certificate is
// still revoked (in the CA and on the CRL), and ca.db is kept aside as ca.db.migrated.
func TestStartMovesTheOldCADatabase(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	key, err := seal.LoadOrCreate(filepath.Join(data, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(data, "ca")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The old layout: smallstep's bbolt driver on DATA/ca/ca.db, as certs.Open used to open it.
	old, err := nosql.New(nosql.BBoltDriver, filepath.Join(caDir, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	oldCA, err := certs.Open(caDir, key, certs.WithDB(old))
	if err != nil {
		t.Fatal(err)
	}
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := enroll.ParseCSR(newCSR(t, devKey))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := oldCA.Sign(context.Background(), csr, certs.Profile{Kind: certs.KindAgent, DeviceID: "d_old"})
	if err != nil {
		t.Fatal(err)
	}
	serial := chain[0].SerialNumber
	if err := oldCA.Revoke(context.Background(), serial, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	oldCA.Close()
	old.Close()

	env := newTestEnv(t, func(c *mdmserver.Config) { c.DataDir = data })
	if revoked, err := env.CAForTest().IsRevoked(serial); err != nil || !revoked {
		t.Errorf("after the move, IsRevoked = %v, %v", revoked, err)
	}
	_, der := env.get(env.URL + "/ca/crl")
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		listed = listed || e.SerialNumber.Cmp(serial) == 0
	}
	if !listed {
		t.Errorf("the CRL after the move does not list %s", serial)
	}
	if _, err := os.Stat(filepath.Join(caDir, "ca.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DATA/ca/ca.db after the move: %v, want it gone", err)
	}
	if _, err := os.Stat(filepath.Join(caDir, "ca.db"+boltstore.MigratedSuffix)); err != nil {
		t.Errorf("the old file is not kept aside: %v", err)
	}

	// A restart has nothing to move and keeps the revocation.
	env.Restart()
	if revoked, err := env.CAForTest().IsRevoked(serial); err != nil || !revoked {
		t.Errorf("after a restart, IsRevoked = %v, %v", revoked, err)
	}
}

// A CA database that cannot be moved stops the start: the server must not run a CA that has
// lost its revocations.
func TestStartRefusesAnUnmovableCADatabase(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if _, err := seal.LoadOrCreate(filepath.Join(data, "master.key")); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(data, "ca", "ca.db")
	if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mdmserver.Defaults()
	cfg.DataDir = data
	cfg.Listen = "127.0.0.1:0"
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(servertest.Logger()))
	if err == nil {
		srv.Close()
		t.Fatal("the server started beside a CA database it could not move")
	}
	if !strings.Contains(err.Error(), "moving the CA database") {
		t.Fatalf("New failed for another reason: %v", err)
	}
	if _, err := os.Stat(caFile); err != nil {
		t.Errorf("the unmovable file is gone: %v", err)
	}
}
