package kvstore

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/halemdm/hale/mdmserver/appinstances"
)

var (
	// BucketAppInstances holds instance ID → the JSON of appinstances.Instance.
	BucketAppInstances = []byte("app_instances")
	// BucketAppInstanceKeys holds key ID → instance ID: one key registers once.
	BucketAppInstanceKeys = []byte("app_instance_keys")
	// BucketAppInstanceDevices holds "<device id>\x00<instance id>" → nothing, for a device's
	// instances.
	BucketAppInstanceDevices = []byte("app_instance_devices")
	// BucketAppBindings holds the SHA-256 (hex) of a binding token → the JSON of
	// appinstances.Binding.
	BucketAppBindings = []byte("app_bindings")
)

// appInstancesBuckets are the buckets of the app instances.
var appInstancesBuckets = [][]byte{BucketAppInstances, BucketAppInstanceKeys, BucketAppInstanceDevices, BucketAppBindings}

// AppInstances returns the app instances of this transaction.
func (t *tx) AppInstances() appinstances.Repository { return appInstancesRepo{t} }

// appInstancesRepo is appinstances.Repository on one key-value transaction.
type appInstancesRepo struct{ t *tx }

func (r appInstancesRepo) get(name, key []byte, v any) error {
	b, err := bucket(r.t.tx, name)
	if err != nil {
		return err
	}
	raw := b.Get(key)
	if raw == nil {
		return appinstances.ErrNotFound
	}
	return json.Unmarshal(raw, v)
}

// Instance returns one instance.
func (r appInstancesRepo) Instance(ctx context.Context, id string) (*appinstances.Instance, error) {
	in := new(appinstances.Instance)
	if err := r.get(BucketAppInstances, []byte(id), in); err != nil {
		return nil, err
	}
	return in, nil
}

// InstanceByKey returns the instance registered with keyID.
func (r appInstancesRepo) InstanceByKey(ctx context.Context, keyID string) (*appinstances.Instance, error) {
	b, err := bucket(r.t.tx, BucketAppInstanceKeys)
	if err != nil {
		return nil, err
	}
	id := b.Get([]byte(keyID))
	if id == nil {
		return nil, appinstances.ErrNotFound
	}
	return r.Instance(ctx, string(id))
}

// PutInstance stores in and its key and device index entries.
func (r appInstancesRepo) PutInstance(ctx context.Context, in *appinstances.Instance) error {
	v, err := json.Marshal(in)
	if err != nil {
		return err
	}
	for _, w := range []struct{ bucket, key, value []byte }{
		{BucketAppInstances, []byte(in.ID), v},
		{BucketAppInstanceKeys, []byte(in.KeyID), []byte(in.ID)},
		{BucketAppInstanceDevices, []byte(in.DeviceID + "\x00" + in.ID), []byte{}},
	} {
		b, err := bucket(r.t.tx, w.bucket)
		if err != nil {
			return err
		}
		if err := b.Put(w.key, w.value); err != nil {
			return err
		}
	}
	return nil
}

// DeviceInstances returns a device's instances in instance ID order.
func (r appInstancesRepo) DeviceInstances(ctx context.Context, deviceID string) ([]appinstances.Instance, error) {
	b, err := bucket(r.t.tx, BucketAppInstanceDevices)
	if err != nil {
		return nil, err
	}
	var out []appinstances.Instance
	prefix := []byte(deviceID + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		in, err := r.Instance(ctx, string(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		out = append(out, *in)
	}
	return out, nil
}

// Binding returns the binding token whose hash is hash.
func (r appInstancesRepo) Binding(ctx context.Context, hash string) (*appinstances.Binding, error) {
	bd := new(appinstances.Binding)
	if err := r.get(BucketAppBindings, []byte(hash), bd); err != nil {
		return nil, err
	}
	return bd, nil
}

// PutBinding stores bd under its hash.
func (r appInstancesRepo) PutBinding(ctx context.Context, bd *appinstances.Binding) error {
	v, err := json.Marshal(bd)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketAppBindings)
	if err != nil {
		return err
	}
	return b.Put([]byte(bd.Hash), v)
}
