package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// The inventory's buckets. Records are the Device's JSON under its ID; the indexes map an
// identifier to the ID of the device holding it.
var (
	BucketInventoryDevices      = []byte("inventory_devices")
	BucketInventoryByEnrollment = []byte("inventory_by_enrollment") // nanomdm enrollment id -> device id
	BucketInventoryByCert       = []byte("inventory_by_cert")       // cert serial hex -> device id

	inventoryBuckets = [][]byte{BucketInventoryDevices, BucketInventoryByEnrollment, BucketInventoryByCert}
)

// Inventory returns the device records of this transaction.
func (t *tx) Inventory() inventory.Repository { return inventoryRepo{t} }

// inventoryRepo is inventory.Repository on one key-value transaction.
type inventoryRepo struct{ t *tx }

var _ inventory.Repository = inventoryRepo{}

// Get returns the device with id.
func (r inventoryRepo) Get(ctx context.Context, id string) (*inventory.Device, error) {
	b, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, inventory.ErrNotFound
	}
	return decodeDevice(id, v)
}

// GetByEnrollmentID returns the device holding nanomdm enrollment ID eid.
func (r inventoryRepo) GetByEnrollmentID(ctx context.Context, eid string) (*inventory.Device, error) {
	return r.byIndex(ctx, BucketInventoryByEnrollment, eid)
}

// GetByCertSerial returns the device holding the certificate serial (indexed form).
func (r inventoryRepo) GetByCertSerial(ctx context.Context, serial string) (*inventory.Device, error) {
	return r.byIndex(ctx, BucketInventoryByCert, serial)
}

func (r inventoryRepo) byIndex(ctx context.Context, index []byte, key string) (*inventory.Device, error) {
	if key == "" {
		return nil, inventory.ErrNotFound
	}
	b, err := bucket(r.t.tx, index)
	if err != nil {
		return nil, err
	}
	id := b.Get([]byte(key))
	if id == nil {
		return nil, inventory.ErrNotFound
	}
	d, err := r.Get(ctx, string(id))
	if errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("inventory: index %s points %q at missing device %s", index, key, id)
	}
	return d, err
}

// Put writes d's record and moves its index entries from those of the record it replaces.
func (r inventoryRepo) Put(ctx context.Context, d *inventory.Device) error {
	if !r.t.tx.Writable() {
		return storage.ErrReadOnly
	}
	devices, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return err
	}
	old := &inventory.Device{}
	if v := devices.Get([]byte(d.ID)); v != nil {
		if old, err = decodeDevice(d.ID, v); err != nil {
			return err
		}
	}
	byEnrollment, err := bucket(r.t.tx, BucketInventoryByEnrollment)
	if err != nil {
		return err
	}
	byCert, err := bucket(r.t.tx, BucketInventoryByCert)
	if err != nil {
		return err
	}
	// Every conflict is found before anything is written, so a refused Put leaves the
	// transaction as it was.
	if err := checkIndex(byEnrollment, d.ID, oneOrNone(d.EnrollmentID)); err != nil {
		return err
	}
	if err := checkIndex(byCert, d.ID, d.CertSerials); err != nil {
		return err
	}
	if err := reindex(byEnrollment, d.ID, oneOrNone(old.EnrollmentID), oneOrNone(d.EnrollmentID)); err != nil {
		return err
	}
	if err := reindex(byCert, d.ID, old.CertSerials, d.CertSerials); err != nil {
		return err
	}
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return devices.Put([]byte(d.ID), v)
}

// checkIndex reports a key of device id that the index gives to another device: an identifier
// belongs to one device.
func checkIndex(b Bucket, id string, keys []string) error {
	for _, k := range keys {
		if cur := b.Get([]byte(k)); cur != nil && string(cur) != id {
			return fmt.Errorf("%w: %q belongs to device %s", inventory.ErrConflict, k, cur)
		}
	}
	return nil
}

// reindex moves index entries of device id from the old keys to the new ones.
func reindex(b Bucket, id string, old, new []string) error {
	for _, k := range old {
		if !slices.Contains(new, k) {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
	}
	for _, k := range new {
		// An entry already there is not written again: a device with many certificate serials
		// would otherwise rewrite them all on every change (checkIndex has just read them).
		if string(b.Get([]byte(k))) == id {
			continue
		}
		if err := b.Put([]byte(k), []byte(id)); err != nil {
			return err
		}
	}
	return nil
}

func oneOrNone(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Touch moves device id's LastSeen forward to at.
func (r inventoryRepo) Touch(ctx context.Context, id string, at time.Time) error {
	if !r.t.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return inventory.ErrNotFound
	}
	d, err := decodeDevice(id, v)
	if err != nil {
		return err
	}
	if !at.After(d.LastSeen) {
		return nil
	}
	d.LastSeen = at
	nv, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), nv)
}

// filterFields is the part of a record a filter looks at; decoding only these is cheaper than a
// whole Device.
type filterFields struct {
	State inventory.State       `json:"state"`
	Group string                `json:"group"`
	Owner string                `json:"owner"`
	Wipe  *inventory.WipeStatus `json:"wipe"`
	// Platform and AgentVersion: the agent-version filter's.
	Platform     inventory.Platform `json:"platform"`
	AgentVersion string             `json:"agent_version"`
}

// matches decodes the filtered fields of record k and applies f; an empty filter decodes
// nothing.
func matches(f inventory.Filter, k, v []byte) (bool, error) {
	if f == (inventory.Filter{}) {
		return true, nil
	}
	var ff filterFields
	if err := json.Unmarshal(v, &ff); err != nil {
		return false, fmt.Errorf("inventory: decode device %s: %w", k, err)
	}
	return f.Matches(&inventory.Device{State: ff.State, Group: ff.Group, Owner: ff.Owner, Wipe: ff.Wipe,
		Platform: ff.Platform, AgentVersion: ff.AgentVersion}), nil
}

// seekAfter positions c on the first key greater than after (the first key when after is empty).
func seekAfter(c Cursor, after string) (k, v []byte) {
	if after == "" {
		return c.First()
	}
	k, v = c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	return k, v
}

// List returns up to limit matching devices after the ID after, and whether more follow.
func (r inventoryRepo) List(ctx context.Context, f inventory.Filter, after string, limit int) ([]inventory.Device, bool, error) {
	b, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return nil, false, err
	}
	var out []inventory.Device
	c := b.Cursor()
	for k, v := seekAfter(c, after); k != nil; k, v = c.Next() {
		ok, err := matches(f, k, v)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		if len(out) == limit {
			return out, true, nil // one more match exists
		}
		d, err := decodeDevice(string(k), v)
		if err != nil {
			return nil, false, err
		}
		out = append(out, *d)
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
	}
	return out, false, nil
}

// Count returns how many devices match f; the count of all devices is read from the bucket's
// statistics without decoding any.
func (r inventoryRepo) Count(ctx context.Context, f inventory.Filter) (int, error) {
	b, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return 0, err
	}
	if f == (inventory.Filter{}) {
		return b.KeyN()
	}
	n := 0
	err = b.ForEach(func(k, v []byte) error {
		ok, err := matches(f, k, v)
		if ok {
			n++
		}
		return err
	})
	return n, err
}

// ForEach calls fn with every device after the ID after, in ID order.
func (r inventoryRepo) ForEach(ctx context.Context, after string, fn func(*inventory.Device) error) error {
	b, err := bucket(r.t.tx, BucketInventoryDevices)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := seekAfter(c, after); k != nil; k, v = c.Next() {
		d, err := decodeDevice(string(k), v)
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// decodeDevice decodes the record of device id. json.Unmarshal copies what it keeps, so the
// device outlives the transaction.
func decodeDevice(id string, v []byte) (*inventory.Device, error) {
	d := new(inventory.Device)
	if err := json.Unmarshal(v, d); err != nil {
		return nil, fmt.Errorf("inventory: decode device %s: %w", id, err)
	}
	return d, nil
}
