package main

import (
	"io"
	"os"
	"testing"
)

// TestRun runs the harness small: every removal must flip the answer (run fails otherwise).
// No timing is asserted; the figures belong to bench/run.
func TestRun(t *testing.T) {
	if err := os.Chdir("../.."); err != nil { // the harness reads the example policy from the root
		t.Fatal(err)
	}
	r, err := run(io.Discard, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if r.report.N != 4 || r.flip.N != 4 || r.flip.Max <= 0 {
		t.Fatalf("result %+v", r)
	}
}
