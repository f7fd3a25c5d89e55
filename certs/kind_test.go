package certs

import (
	"context"
	"crypto/x509"
	"testing"
	"time"
)

// Each issued kind carries its mark, a renewal keeps it, and a marked identity still verifies
// as a client certificate (the policies extension does not upset path validation).
func TestKindMarked(t *testing.T) {
	a := newTestCA(t)
	for _, kind := range []Kind{KindAgent, KindAppleMDM} {
		key := p256(t)
		chain, err := a.Sign(context.Background(), cnCSR(t, key, "dev-k"), Profile{Kind: kind, DeviceID: "dev-k"})
		if err != nil {
			t.Fatal(err)
		}
		if got := KindOf(chain[0]); got != kind {
			t.Errorf("KindOf(%s identity) = %v", kind, got)
		}
		if err := a.VerifyClientCert(chain); err != nil {
			t.Errorf("%s identity does not verify: %v", kind, err)
		}
	}
	srv, err := a.ServerCertificate([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if got := KindOf(srv.Leaf()); got != KindServer {
		t.Errorf("KindOf(server certificate) = %v", got)
	}

	agent := issueAgent(t, a, "dev-r")
	time.Sleep(1100 * time.Millisecond) // certificate times have one-second resolution
	renewed, err := a.Renew(context.Background(), agent.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if got := KindOf(renewed[0]); got != KindAgent {
		t.Errorf("KindOf(renewed agent identity) = %v", got)
	}
}

// A certificate naming no kind (another CA's, or one issued before kinds were marked) or two
// kinds is of no kind.
func TestKindOfUnmarked(t *testing.T) {
	if got := KindOf(&x509.Certificate{}); got != 0 {
		t.Errorf("KindOf(unmarked) = %v", got)
	}
	both := &x509.Certificate{Policies: []x509.OID{kindOIDs[KindAgent], kindOIDs[KindAppleMDM]}}
	if got := KindOf(both); got != 0 {
		t.Errorf("KindOf(two kinds) = %v", got)
	}
	if got := KindOf(nil); got != 0 {
		t.Errorf("KindOf(nil) = %v", got)
	}
}
