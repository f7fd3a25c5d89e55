package mdmserver

import (
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/revocation"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Each domain package declares the units of work it needs (its Store and Tx); these narrow the
// server's one store to each of them, so a package sees only its own repositories.

func tokensStore(st storage.Store) tokens.Store {
	return storage.Scope(st, func(tx storage.Tx) tokens.Tx { return tx })
}

func enrollStore(st storage.Store) enroll.Store {
	return storage.Scope(st, func(tx storage.Tx) enroll.Tx { return tx })
}

func inventoryStore(st storage.Store) inventory.Store {
	return storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx })
}

func auditStore(st storage.Store) audit.Store {
	return storage.Scope(st, func(tx storage.Tx) audit.Tx { return tx })
}

func agentCommandsStore(st storage.Store) agentcmd.Store {
	return storage.Scope(st, func(tx storage.Tx) agentcmd.Tx { return tx })
}

func pushCertsStore(st storage.Store) pushcert.Store {
	return storage.Scope(st, func(tx storage.Tx) pushcert.Tx { return tx })
}

func commandsStore(st storage.Store) commands.Store {
	return storage.Scope(st, func(tx storage.Tx) commands.Tx { return tx })
}

// resultStore is what storing an Apple MDM result uses: the commands, and what its audit entry
// needs.
func resultStore(st storage.Store) commands.ResultStore {
	return storage.Scope(st, func(tx storage.Tx) commands.ResultTx { return tx })
}

func complianceStore(st storage.Store) compliance.Store {
	return storage.Scope(st, func(tx storage.Tx) compliance.Tx { return tx })
}

func approvalsStore(st storage.Store) approvals.Store {
	return storage.Scope(st, func(tx storage.Tx) approvals.Tx { return tx })
}

func securityStore(st storage.Store) security.Store {
	return storage.Scope(st, func(tx storage.Tx) security.Tx { return tx })
}

func signingStore(st storage.Store) signing.Store {
	return storage.Scope(st, func(tx storage.Tx) signing.Tx { return tx })
}

func eventStore(st storage.Store) events.Store {
	return storage.Scope(st, func(tx storage.Tx) events.Tx { return tx })
}

func revocationStore(st storage.Store) revocation.Store {
	return storage.Scope(st, func(tx storage.Tx) revocation.Tx { return tx })
}

func appInstancesStore(st storage.Store) appinstances.Store {
	return storage.Scope(st, func(tx storage.Tx) appinstances.Tx { return tx })
}

func androidStore(st storage.Store) android.Store {
	return storage.Scope(st, func(tx storage.Tx) android.Tx { return tx })
}

func appleStore(st storage.Store) applemdm.Store {
	return storage.Scope(st, func(tx storage.Tx) applemdm.Tx { return tx })
}
