package kvstore

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/halemdm/hale/mdmserver/android"
)

// The Android buckets: the binding under one key, device name ↔ device ID both ways, and the
// Pub/Sub message IDs seen (ID → RFC 3339 time).
var (
	BucketAndroidBinding  = []byte("android_binding")
	BucketAndroidByName   = []byte("android_device_by_name")
	BucketAndroidByID     = []byte("android_device_by_id")
	BucketAndroidMessages = []byte("android_messages")
	BucketAndroidOps      = []byte("android_operations")
	androidBindingKey     = []byte("binding")
)

// androidBuckets are the buckets of the Android repository.
var androidBuckets = [][]byte{BucketAndroidBinding, BucketAndroidByName, BucketAndroidByID, BucketAndroidMessages, BucketAndroidOps}

// Android returns the Android repository of this transaction.
func (t *tx) Android() android.Repository { return androidRepo{t} }

// androidRepo is android.Repository on one key-value transaction.
type androidRepo struct{ t *tx }

func (r androidRepo) Binding(ctx context.Context) (*android.Binding, error) {
	b, err := bucket(r.t.tx, BucketAndroidBinding)
	if err != nil {
		return nil, err
	}
	v := b.Get(androidBindingKey)
	if v == nil {
		return nil, android.ErrNotBound
	}
	var out android.Binding
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (r androidRepo) PutBinding(ctx context.Context, bd *android.Binding) error {
	v, err := json.Marshal(bd)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketAndroidBinding)
	if err != nil {
		return err
	}
	return b.Put(androidBindingKey, v)
}

func (r androidRepo) lookup(name []byte, key string) (string, error) {
	b, err := bucket(r.t.tx, name)
	if err != nil {
		return "", err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return "", android.ErrNotFound
	}
	return string(v), nil
}

func (r androidRepo) DeviceID(ctx context.Context, name string) (string, error) {
	return r.lookup(BucketAndroidByName, name)
}

func (r androidRepo) DeviceName(ctx context.Context, deviceID string) (string, error) {
	return r.lookup(BucketAndroidByID, deviceID)
}

func (r androidRepo) Devices(ctx context.Context) (map[string]string, error) {
	b, err := bucket(r.t.tx, BucketAndroidByName)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	err = b.ForEach(func(k, v []byte) error {
		out[string(k)] = string(v)
		return nil
	})
	return out, err
}

func (r androidRepo) PutDevice(ctx context.Context, name, deviceID string) error {
	byName, err := bucket(r.t.tx, BucketAndroidByName)
	if err != nil {
		return err
	}
	byID, err := bucket(r.t.tx, BucketAndroidByID)
	if err != nil {
		return err
	}
	if err := byName.Put([]byte(name), []byte(deviceID)); err != nil {
		return err
	}
	return byID.Put([]byte(deviceID), []byte(name))
}

func (r androidRepo) SeeMessage(ctx context.Context, id string, at time.Time) (bool, error) {
	b, err := bucket(r.t.tx, BucketAndroidMessages)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(id)) != nil {
		return false, nil
	}
	return true, b.Put([]byte(id), []byte(at.UTC().Format(time.RFC3339Nano)))
}

func (r androidRepo) Seen(ctx context.Context, id string) (bool, error) {
	b, err := bucket(r.t.tx, BucketAndroidMessages)
	if err != nil {
		return false, err
	}
	return b.Get([]byte(id)) != nil, nil
}

func (r androidRepo) PruneMessages(ctx context.Context, before time.Time) (int, error) {
	b, err := bucket(r.t.tx, BucketAndroidMessages)
	if err != nil {
		return 0, err
	}
	var old [][]byte
	err = b.ForEach(func(k, v []byte) error {
		at, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil || at.Before(before) {
			old = append(old, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

func (r androidRepo) PutOperation(ctx context.Context, name string, op android.Operation) error {
	v, err := json.Marshal(op)
	if err != nil {
		return err
	}
	b, err := bucket(r.t.tx, BucketAndroidOps)
	if err != nil {
		return err
	}
	return b.Put([]byte(name), v)
}

func (r androidRepo) Operations(ctx context.Context) (map[string]android.Operation, error) {
	b, err := bucket(r.t.tx, BucketAndroidOps)
	if err != nil {
		return nil, err
	}
	out := map[string]android.Operation{}
	err = b.ForEach(func(k, v []byte) error {
		var op android.Operation
		if err := json.Unmarshal(v, &op); err != nil {
			return err
		}
		out[string(k)] = op
		return nil
	})
	return out, err
}

func (r androidRepo) DeleteOperation(ctx context.Context, name string) error {
	b, err := bucket(r.t.tx, BucketAndroidOps)
	if err != nil {
		return err
	}
	return b.Delete([]byte(name))
}
