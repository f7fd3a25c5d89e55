package agentapi

import (
	"fmt"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	n := NewNonces()
	now := time.Now()
	n.now = func() time.Time { return now }
	a, _ := n.Issue("d1")
	if n.Use("d2", a) {
		t.Fatal("another device used d1's nonce")
	}
	if !n.Use("d1", a) || n.Use("d1", a) {
		t.Fatal("nonce not single-use")
	}
	b, _ := n.Issue("d1")
	now = now.Add(nonceTTL)
	if n.Use("d1", b) {
		t.Fatal("expired nonce accepted")
	}
	var issued []string
	for i := 0; i < 100; i++ {
		nonce, _ := n.Issue("d1")
		issued = append(issued, nonce)
	}
	if held := len(n.byDevice["d1"]); held > maxNoncesPerDevice {
		t.Fatalf("one device holds %d nonces", held)
	}
	if n.Use("d1", issued[len(issued)-maxNoncesPerDevice-1]) {
		t.Fatal("a nonce beyond the per-device limit was still usable")
	}
	for _, nonce := range issued[len(issued)-maxNoncesPerDevice:] {
		if !n.Use("d1", nonce) {
			t.Fatal("one of the newest nonces was dropped")
		}
	}
}

// TestNonceSweep checks that devices that fetched a nonce and never came back are forgotten.
func TestNonceSweep(t *testing.T) {
	n := NewNonces()
	now := time.Now()
	n.now = func() time.Time { return now }
	for i := range minNonceSweep - 1 {
		n.Issue(fmt.Sprint("gone-", i))
	}
	now = now.Add(nonceTTL)
	n.Issue("fresh")
	if len(n.byDevice) != 1 {
		t.Fatalf("after the sweep %d devices hold nonces, want 1", len(n.byDevice))
	}
}

func BenchmarkNonceIssueUse(b *testing.B) {
	n := NewNonces()
	for i := range 100_000 {
		n.Issue(fmt.Sprint("device-", i))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		d := fmt.Sprint("device-", i%100_000)
		nonce, _ := n.Issue(d)
		n.Use(d, nonce)
	}
}

// BenchmarkNonceIssueAtLimit is a device that keeps fetching nonces without using them, in a
// fleet of 100,000: each issue must drop its oldest without scanning the fleet.
func BenchmarkNonceIssueAtLimit(b *testing.B) {
	n := NewNonces()
	for i := range 100_000 {
		n.Issue(fmt.Sprint("device-", i))
	}
	for b.Loop() {
		n.Issue("device-0")
	}
}
