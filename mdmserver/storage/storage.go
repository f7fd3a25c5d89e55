// Package storage is the boundary between Hale's domain logic and its database: a [Store] runs
// units of work, and a [Tx] hands out each domain's repository bound to one transaction.
//
// Each domain package (inventory, tokens, audit, ...) owns its Repository interface, in its own
// terms: domain types in and out, its own sentinel errors, nothing of the storage format. The
// domain's rules (state transitions, one-time redemption, the audit log's Merkle hashing) are
// functions in the domain package over that Repository, so every backend shares them. A backend
// (storage/boltstore, the embedded default) implements every repository, and passes the one
// conformance suite in storage/storagetest.
//
// A change, its audit entry and its outbox event commit in one [Store.Update]:
//
//	err := st.Update(ctx, func(tx storage.Tx) error {
//		d, err := inventory.SetState(ctx, tx.Inventory(), id, inventory.StateLocked, now)
//		if err != nil {
//			return err
//		}
//		_, err = audit.Append(ctx, tx.Audit(), entry)
//		return err
//	})
package storage

import (
	"context"
	"errors"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/consolesession"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Store is all of Hale's state on one backend. Its methods are safe for concurrent use.
type Store interface {
	// View runs fn on one consistent snapshot. fn must not write.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction: what fn writes through tx commits together
	// when fn returns nil, and is durable when Update returns. An error from fn or from the
	// commit leaves nothing written.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for small idempotent units that many goroutines run at once (a device's
	// last-seen time, a command result): the backend may commit several in one transaction, so
	// fn may run more than once and must give the same result each time.
	Batch(ctx context.Context, fn func(Tx) error) error
	// Ping proves the store is reachable and writable.
	Ping(ctx context.Context) error
	// Close releases the store. Units of work still running finish first.
	Close() error
}

// Tx hands out the repositories of one transaction. They must not be used after the function
// given to View, Update or Batch returns; in a View they must not write.
type Tx interface {
	// Signing holds the signing keys of posture tokens and SETs.
	Signing() signing.Repository
	// Events holds the SSF event streams, their subjects and their outboxes.
	Events() events.Repository
	// Compliance holds the policies and their assignments, every device's posture, verdict
	// and verdict history, and what each Apple device was last sent of its policy.
	Compliance() compliance.Repository
	// Audit holds the audit log: entries, tree hashes, checkpoints.
	Audit() audit.Repository
	// Approvals holds the two-person rule's requests.
	Approvals() approvals.Repository
	// Tokens holds the API tokens.
	Tokens() tokens.Repository
	// Enrollments holds enrollments, their token hashes and SCEP challenges.
	Enrollments() enroll.Repository
	// Inventory holds the device records and their indexes.
	Inventory() inventory.Repository
	// Idempotency holds the answers saved for Idempotency-Keys.
	Idempotency() idempotency.Repository
	// Commands holds the Apple MDM commands' records, results and sealed PINs.
	Commands() commands.Repository
	// AgentCommands holds the agents' lock and wipe commands.
	AgentCommands() agentcmd.Repository
	// PushCerts holds the APNs push certificates, their keys sealed.
	PushCerts() pushcert.Repository
	// AppInstances holds the messaging app's registered instances and their binding tokens.
	AppInstances() appinstances.Repository
	// Android holds the Android enterprise binding, its devices' names and the Pub/Sub
	// message IDs handled.
	Android() android.Repository
	// BreakGlass holds the emergency access uses and their reviews.
	BreakGlass() breakglass.Repository
	// ConsoleSessions holds the web console's sessions.
	ConsoleSessions() consolesession.Repository
}

// ErrReadOnly is returned by a repository asked to write inside a View.
var ErrReadOnly = errors.New("storage: write in a read-only transaction")
