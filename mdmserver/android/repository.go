package android

import (
	"context"
	"errors"
	"time"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// Binding is Hale's binding to the organisation's Android Management API enterprise.
type Binding struct {
	// Enterprise is the enterprise's resource name ("enterprises/LC0123abcd").
	Enterprise string `json:"enterprise"`
	// ServiceAccount is the client_email of the organisation's service account; its key is
	// only ever stored sealed (SealedKey).
	ServiceAccount string `json:"service_account"`
	SealedKey      []byte `json:"sealed_key"`
	// Topic is the Pub/Sub topic the enterprise publishes its notifications to
	// ("projects/P/topics/T").
	Topic   string    `json:"topic"`
	BoundAt time.Time `json:"bound_at"`
	BoundBy string    `json:"bound_by,omitempty"`
}

// Operation is a Hale command an AMAPI operation still runs.
type Operation struct {
	DeviceID  string `json:"device_id"`
	CommandID string `json:"command_id"`
}

// Errors of the repository.
var (
	// ErrNotBound: no enterprise is bound.
	ErrNotBound = errors.New("android: no Android enterprise is bound; run mdmctl android bind")
	// ErrNotFound: no device is known by that name or ID.
	ErrNotFound = errors.New("android: no such device")
)

// Repository stores the binding, which AMAPI device is which Hale device, and the Pub/Sub
// message IDs already handled. It belongs to one transaction of its backend.
type Repository interface {
	// Binding returns the binding, or ErrNotBound.
	Binding(ctx context.Context) (*Binding, error)
	// PutBinding stores b, replacing the binding.
	PutBinding(ctx context.Context, b *Binding) error
	// DeviceID returns the Hale device ID of the AMAPI device name, or ErrNotFound.
	DeviceID(ctx context.Context, name string) (string, error)
	// DeviceName returns the AMAPI device name of a Hale device ID, or ErrNotFound.
	DeviceName(ctx context.Context, deviceID string) (string, error)
	// Devices returns every recorded AMAPI device name with its Hale device ID.
	Devices(ctx context.Context) (map[string]string, error)
	// PutDevice records that AMAPI device name is Hale device deviceID (both ways).
	PutDevice(ctx context.Context, name, deviceID string) error
	// PutOperation records that AMAPI operation name carries Hale command cmdID of device
	// deviceID, until DeleteOperation.
	PutOperation(ctx context.Context, name string, op Operation) error
	// Operations returns every recorded operation by name.
	Operations(ctx context.Context) (map[string]Operation, error)
	// DeleteOperation forgets an operation; forgetting an unknown one is no error.
	DeleteOperation(ctx context.Context, name string) error
	// SeeMessage records a Pub/Sub message ID seen at at; fresh is false when it was seen
	// before, and then nothing changes.
	SeeMessage(ctx context.Context, id string, at time.Time) (fresh bool, err error)
	// Seen reports whether a Pub/Sub message ID was seen (and not yet pruned).
	Seen(ctx context.Context, id string) (bool, error)
	// PruneMessages forgets the message IDs seen before before, and returns how many.
	PruneMessages(ctx context.Context, before time.Time) (int, error)
}

// Tx is what the service needs of a unit of work: its repository, the audit log that records
// a binding or an enrollment in the same commit, and the enrollments and inventory a phone's
// first report redeems and creates together.
type Tx interface {
	Android() Repository
	Audit() audit.Repository
	Enrollments() enroll.Repository
	Inventory() inventory.Repository
}

// Store runs the service's units of work (storage.Scope(st, func(tx storage.Tx) android.Tx {
// return tx }) is one).
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
}
