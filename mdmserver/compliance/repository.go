package compliance

import (
	"context"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// PolicyRepository keeps the versioned policies and their assignments. It only stores: version
// numbering, validation and precedence are the PolicyStore's rules.
type PolicyRepository interface {
	// CurrentPolicies returns the current version of every policy (not deleted), unparsed:
	// Policy is nil.
	CurrentPolicies(ctx context.Context) ([]*StoredPolicy, error)
	// LastPolicyVersion returns the highest version ever stored under name, also after a
	// delete; 0 when there is none.
	LastPolicyVersion(ctx context.Context, name string) (int, error)
	// PutPolicy stores sp as version sp.Version of its policy, makes it the current version
	// and the last version stored under its name.
	PutPolicy(ctx context.Context, sp *StoredPolicy) error
	// DeletePolicy removes the current version of a policy; its versions stay.
	DeletePolicy(ctx context.Context, name string) error
	// PolicyVersion returns one stored version (Policy nil), or an error wrapping ErrNotFound.
	PolicyVersion(ctx context.Context, name string, version int) (*StoredPolicy, error)
	// PolicyVersions returns every stored version of a policy, oldest first (Policy nil).
	PolicyVersions(ctx context.Context, name string) ([]*StoredPolicy, error)
	// Assignments returns every assignment.
	Assignments(ctx context.Context) ([]Assignment, error)
	// PutAssignment assigns a.Policy to a.Target, replacing what was assigned there.
	PutAssignment(ctx context.Context, a Assignment) error
	// DeleteAssignment removes the assignment of target; a missing one is no error.
	DeleteAssignment(ctx context.Context, target Target) error
	// PolicyGeneration returns how many changes to the policies and assignments were counted
	// (NextPolicyGeneration) so far; 0 when none. It is cheap: one key.
	PolicyGeneration(ctx context.Context) (uint64, error)
	// NextPolicyGeneration counts one more change, in this unit of work, and returns the new
	// generation. The PolicyStore calls it in every unit of work that changes a policy or an
	// assignment.
	NextPolicyGeneration(ctx context.Context) (uint64, error)
}

// PostureRepository keeps every device's posture, its current verdict and its verdict history.
type PostureRepository interface {
	// ForEachPosture calls fn with every stored posture, by device ID, and stops at fn's first
	// error, which it returns.
	ForEachPosture(ctx context.Context, fn func(deviceID string, p *policies.Posture) error) error
	// ForEachVerdict calls fn with every stored verdict, by device ID, and stops at fn's first
	// error, which it returns.
	ForEachVerdict(ctx context.Context, fn func(deviceID string, v *policies.Verdict) error) error
	// Posture returns the stored posture of a device, nil when it has none.
	Posture(ctx context.Context, deviceID string) (*policies.Posture, error)
	// Verdict returns the stored verdict of a device, nil when it has none.
	Verdict(ctx context.Context, deviceID string) (*policies.Verdict, error)
	// PutPosture stores a device's posture.
	PutPosture(ctx context.Context, deviceID string, p *policies.Posture) error
	// PutVerdict stores a device's verdict and, with history, appends it to the device's
	// verdict history after every row written before.
	PutVerdict(ctx context.Context, deviceID string, v *policies.Verdict, history bool) error
	// History returns up to limit of a device's history rows, oldest first.
	History(ctx context.Context, deviceID string, limit int) ([]policies.Verdict, error)
}

// Delivery is what an Apple device was last sent of its effective policy.
type Delivery struct {
	Policy   string
	Version  int
	Platform string
	// Identifiers are the profile identifiers it was sent to install.
	Identifiers []string
	// DeclarationsToken is the declarations token a device on declarative management was last
	// sent (with the DeclarativeManagement command); empty on the profile path.
	DeclarationsToken string
}

// DeliveryRepository records which policy version was delivered to each Apple device.
type DeliveryRepository interface {
	// Delivery returns what was last delivered to a device; ok is false when nothing was.
	Delivery(ctx context.Context, deviceID string) (d Delivery, ok bool, err error)
	// PutDelivery records what was delivered to a device.
	PutDelivery(ctx context.Context, deviceID string, d Delivery) error
}

// Repository is all of compliance's stored state.
type Repository interface {
	PolicyRepository
	PostureRepository
	DeliveryRepository
}

// Tx is what compliance uses of one unit of work: its own repository, and the inventory the
// engine evaluates.
type Tx interface {
	Compliance() Repository
	Inventory() inventory.Repository
}

// Store runs compliance's units of work (storage.Scope of the server's store satisfies it).
type Store interface {
	// View runs fn on one consistent snapshot; fn must not write.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for small idempotent units many goroutines run at once; fn may run
	// more than once.
	Batch(ctx context.Context, fn func(Tx) error) error
}
