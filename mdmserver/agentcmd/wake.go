package agentcmd

import (
	"bytes"
	"context"
	"errors"
)

// StoreKey is the key a backend keeps command id of device deviceID under: the device ID, a
// 0x00 byte, the command ID. It is defined here, not in the backend, because it is also what the
// database's change feed names when another server writes a command, and WakeKeys reads it.
// Device IDs hold no 0x00 byte (the repository finds a device's commands by the prefix).
func StoreKey(deviceID, id string) []byte {
	k := make([]byte, 0, len(deviceID)+1+len(id))
	k = append(k, deviceID...)
	k = append(k, 0)
	return append(k, id...)
}

// SplitStoreKey returns the device ID and command ID of a StoreKey; ok is false for a key of
// another shape.
func SplitStoreKey(key []byte) (deviceID, id string, ok bool) {
	i := bytes.IndexByte(key, 0)
	if i <= 0 || i == len(key)-1 {
		return "", "", false
	}
	return string(key[:i]), string(key[i+1:]), true
}

// WakeKeys wakes the long polls waiting on this Queue for the commands stored under keys: the
// keys of the agent command records (StoreKey, the keys of kvstore.BucketAgentCommands), as the
// change feed names the rows another server wrote. A command enqueued through another Queue
// (another server) wakes only that Queue's polls by itself; the feed calls this on the others.
//
// It reads the named commands in one View, and only those of devices with a poll waiting here:
// a command that is gone, is finished (a result reported elsewhere must not end a poll early
// with nothing), or whose key is not a command key wakes nothing. A poll that starts after the
// check reads the store itself, so none is missed. It returns an error only when the store
// cannot be read; the polls then end at their own timeout and the agent polls again.
func (q *Queue) WakeKeys(ctx context.Context, keys ...[]byte) error {
	type ref struct{ device, id string }
	var refs []ref
	q.mu.Lock()
	for _, k := range keys {
		dev, id, ok := SplitStoreKey(k)
		if ok && len(q.waiters[dev]) > 0 {
			refs = append(refs, ref{dev, id})
		}
	}
	q.mu.Unlock()
	if len(refs) == 0 {
		return nil
	}
	wake := map[string]bool{}
	err := q.st.View(ctx, func(tx Tx) error {
		r := tx.AgentCommands()
		for _, c := range refs {
			if wake[c.device] {
				continue
			}
			cmd, err := r.Command(ctx, c.device, c.id)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case err != nil:
				return err
			}
			if !cmd.Finished() {
				wake[c.device] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for dev := range wake {
		q.wake(dev)
	}
	return nil
}
