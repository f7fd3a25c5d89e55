package mdmserver

import (
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	n := newNonces()
	now := time.Now()
	n.now = func() time.Time { return now }
	a, _ := n.issue("d1")
	if n.use("d2", a) {
		t.Fatal("another device used d1's nonce")
	}
	if !n.use("d1", a) || n.use("d1", a) {
		t.Fatal("nonce not single-use")
	}
	b, _ := n.issue("d1")
	now = now.Add(nonceTTL)
	if n.use("d1", b) {
		t.Fatal("expired nonce accepted")
	}
	for i := 0; i < 100; i++ {
		n.issue("d1")
	}
	if n.count["d1"] > maxNoncesPerDevice || len(n.issued) > maxNoncesPerDevice {
		t.Fatalf("one device holds %d nonces", n.count["d1"])
	}
}
