// Package storagetest is the conformance suite every storage backend must pass: each
// repository's contract, units of work (a failed one leaves nothing), concurrency under -race,
// and durability (what committed is there after a reopen). A backend's test is one line:
//
//	func TestConformance(t *testing.T) { storagetest.Run(t, open) }
//
// in the style of nanomdm's test/e2e.TestE2E.
package storagetest

import (
	"context"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
)

// Opener opens the backend under test with its data in dir. Called again with the same dir
// after the first store was closed, it must open the same data.
type Opener func(t *testing.T, dir string) storage.Store

// suites are the contracts, one per repository plus the units of work; each lives in its own
// file of this package.
var suites = []struct {
	name string
	run  func(t *testing.T, open Opener)
}{
	{"signing", testSigning},
	{"events", testEvents},
	{"compliance", testCompliance},
	{"enroll", testEnroll},
	{"audit", testAudit},
	{"approvals", testApprovals},
	{"tokens", testTokens},
	{"inventory", testInventory},
	{"idempotency", testIdempotency},
	{"commands", testCommands},
	{"agentcmd", testAgentCommands},
	{"pushcert", testPushCerts},
	{"appinstances", testAppInstances},
	{"android", testAndroid},
	{"breakglass", testBreakGlass},
	{"consolesessions", testConsoleSessions},
}

// Run runs every contract against the backend open opens.
func Run(t *testing.T, open Opener) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) { s.run(t, open) })
	}
}

// Fresh opens the backend on a new empty directory and closes it when the test ends.
func Fresh(t *testing.T, open Opener) storage.Store {
	t.Helper()
	st := open(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Reopen closes st and opens dir again, for durability checks; the new store is closed when the
// test ends.
func Reopen(t *testing.T, open Opener, st storage.Store, dir string) storage.Store {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	st = open(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// update runs fn in one unit of work or fails the test.
func update(t *testing.T, st storage.Store, fn func(ctx context.Context, tx storage.Tx) error) {
	t.Helper()
	ctx := context.Background()
	if err := st.Update(ctx, func(tx storage.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}

// view runs fn on one snapshot or fails the test.
func view(t *testing.T, st storage.Store, fn func(ctx context.Context, tx storage.Tx) error) {
	t.Helper()
	ctx := context.Background()
	if err := st.View(ctx, func(tx storage.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatal(err)
	}
}
