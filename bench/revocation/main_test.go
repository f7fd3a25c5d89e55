package main

import (
	"io"
	"testing"
)

// TestRun runs the harness small: every wipe's SET must arrive (run fails otherwise) and be
// counted once. No timing is asserted; the figures belong to bench/run.
func TestRun(t *testing.T) {
	r, err := run(io.Discard, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if r.call.N != 4 || r.revoked.N != 4 || r.revoked.Max <= 0 {
		t.Fatalf("result %+v", r)
	}
}
