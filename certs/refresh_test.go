package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
)

// TestRefreshRevocationsFollowsAnotherAuthority: two authorities on one database, as a primary
// and an access replica. A certificate the primary revokes is refused by the replica's mTLS
// verification and listed in its CRL once the replica refreshes.
func TestRefreshRevocationsFollowsAnotherAuthority(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	primary := openCA(t, dir, key)
	replica := openCA(t, dir, key)
	ctx := context.Background()
	c1 := issueAgent(t, primary, "dev-1")
	c2 := issueAgent(t, primary, "dev-2")
	if err := replica.VerifyClientCert([]*x509.Certificate{c1.Leaf}); err != nil {
		t.Fatalf("replica refuses the primary's certificate: %v", err)
	}
	before, err := replica.CRL(ctx) // cached now
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parseCRL(t, replica, before).RevokedCertificateEntries); n != 0 {
		t.Fatalf("CRL lists %d before any revocation", n)
	}

	if err := primary.Revoke(ctx, c1.Leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if err := replica.VerifyClientCert([]*x509.Certificate{c1.Leaf}); err != nil {
		t.Fatalf("before the refresh the replica already refuses (%v): the test proves nothing", err)
	}
	if err := replica.RefreshRevocations(ctx); err != nil {
		t.Fatalf("RefreshRevocations: %v", err)
	}
	if err := replica.VerifyClientCert([]*x509.Certificate{c1.Leaf}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("replica VerifyClientCert(revoked) = %v, want ErrRevoked", err)
	}
	if ok, _ := replica.IsRevoked(c1.Leaf.SerialNumber); !ok {
		t.Fatal("replica IsRevoked false after the refresh")
	}
	if err := replica.VerifyClientCert([]*x509.Certificate{c2.Leaf}); err != nil {
		t.Fatalf("replica refuses an unrevoked certificate: %v", err)
	}
	der, err := replica.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rl := parseCRL(t, replica, der)
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(c1.Leaf.SerialNumber) != 0 {
		t.Fatalf("replica CRL entries %+v, want the revoked serial", rl.RevokedCertificateEntries)
	}

	if err := replica.RefreshRevocations(canceled()); !errors.Is(err, context.Canceled) {
		t.Fatalf("RefreshRevocations with a canceled context = %v", err)
	}
	if ok, _ := replica.IsRevoked(c1.Leaf.SerialNumber); !ok {
		t.Fatal("a failed refresh dropped the revoked set")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
