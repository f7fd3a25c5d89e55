package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/plist"
	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/seal"
)

func newMDM(t *testing.T) *MDMStorage {
	t.Helper()
	m, err := NewMDMStorage(openTestStore(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testCommand(t testing.TB, uuid string) *mdm.Command {
	raw, err := plist.Marshal(map[string]any{"CommandUUID": uuid, "Command": map[string]any{"RequestType": "ProfileList"}})
	if err != nil {
		t.Fatal(err)
	}
	c := &mdm.Command{CommandUUID: uuid, Raw: raw}
	c.Command.RequestType = "ProfileList"
	return c
}

func request(id string) *mdm.Request {
	r := mdm.NewRequestWithContext(context.Background(), nil)
	r.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: id}
	return r
}

// next answers the device's report and returns the UUID of the command handed out next ("" for
// none), as nanomdm's service does.
func next(t *testing.T, m *MDMStorage, id, uuid, status string) string {
	t.Helper()
	r := request(id)
	if err := m.StoreCommandReport(r, &mdm.CommandResults{CommandUUID: uuid, Status: status}); err != nil {
		t.Fatal(err)
	}
	cmd, err := m.RetrieveNextCommand(r, status == "NotNow")
	if err != nil {
		t.Fatal(err)
	}
	if cmd == nil {
		return ""
	}
	return cmd.CommandUUID
}

// nanomdm v0.9.0's kv queue drops A here: after A is NotNow and B acknowledged, B is handed out
// again and acknowledging it twice empties the queue. Hale's queue must keep A.
func TestQueueKeepsNotNowCommands(t *testing.T) {
	m := newMDM(t)
	ctx := context.Background()
	for _, u := range []string{"A", "B"} {
		if _, err := m.EnqueueCommand(ctx, []string{"dev"}, testCommand(t, u)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct{ uuid, status, want string }{
		{"", "Idle", "A"},
		{"A", "NotNow", "B"},       // NotNow commands are skipped right after a NotNow answer
		{"B", "Acknowledged", "A"}, // then offered again
		{"A", "NotNow", ""},        // nanomdm's kv queue hands out B again here
		{"", "Idle", "A"},          // and after acknowledging B twice has lost A
		{"A", "Acknowledged", ""},
	}
	for i, s := range steps {
		if got := next(t, m, "dev", s.uuid, s.status); got != s.want {
			t.Fatalf("step %d (%s %s): next = %q, want %q", i, s.status, s.uuid, got, s.want)
		}
	}
}

// A device polling while commands are enqueued never sees a command without its body.
func TestQueueEnqueueIsAtomicForPollers(t *testing.T) {
	m := newMDM(t)
	ctx := context.Background()
	const n = 40
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2*n)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if _, err := m.EnqueueCommand(ctx, []string{"dev"}, testCommand(t, fmt.Sprint("C", i))); err != nil {
				errs <- err
			}
		}
	}()
	seen := map[string]bool{}
	go func() {
		defer wg.Done()
		for len(seen) < n {
			cmd, err := m.RetrieveNextCommand(request("dev"), false)
			if err != nil {
				errs <- err
				return
			}
			if cmd == nil {
				continue
			}
			if len(cmd.Raw) == 0 || cmd.Command.RequestType != "ProfileList" {
				errs <- fmt.Errorf("command %s handed out without its body", cmd.CommandUUID)
				return
			}
			seen[cmd.CommandUUID] = true
			if err := m.StoreCommandReport(request("dev"), &mdm.CommandResults{CommandUUID: cmd.CommandUUID, Status: "Acknowledged"}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestQueueRejectsBadInput(t *testing.T) {
	m := newMDM(t)
	ctx := context.Background()
	if _, err := m.EnqueueCommand(ctx, []string{"dev"}, &mdm.Command{}); err == nil {
		t.Error("empty command enqueued")
	}
	if _, err := m.EnqueueCommand(ctx, []string{"a\x00b"}, testCommand(t, "X")); err == nil {
		t.Error("enrollment id with NUL enqueued")
	}
	if _, err := m.EnqueueCommand(ctx, []string{"dev"}, testCommand(t, "D")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnqueueCommand(ctx, []string{"dev"}, testCommand(t, "D")); err == nil {
		t.Error("duplicate command UUID enqueued")
	}
	if err := m.StoreCommandReport(request("dev"), &mdm.CommandResults{Status: "Acknowledged"}); err == nil {
		t.Error("report without a command UUID accepted")
	}
	// Another enrollment whose id extends this one's is a different queue.
	if cmd, _ := m.RetrieveNextCommand(request("de"), false); cmd != nil {
		t.Error("queue prefix leaked to another enrollment")
	}
	if err := m.ClearQueue(request("dev")); err != nil {
		t.Fatal(err)
	}
	if cmd, _ := m.RetrieveNextCommand(request("dev"), false); cmd != nil {
		t.Error("ClearQueue left a command")
	}
}

// With a sealer, a queued command's body (which may hold a lock PIN) is never in the file in
// plain text, reads back whole, and is bound to its UUID: a body moved onto another command
// does not open.
func TestQueueSealsCommandBodies(t *testing.T) {
	s := openTestStore(t)
	key, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMDMStorage(s, WithCommandSealer(key))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b := testCommand(t, "CMD-A"), testCommand(t, "CMD-B")
	for _, c := range []*mdm.Command{a, b} {
		if _, err := m.EnqueueCommand(ctx, []string{"dev1"}, c); err != nil {
			t.Fatal(err)
		}
	}
	err = s.DB().Update(func(tx *bbolt.Tx) error {
		cmds := tx.Bucket(bucketQueueCommands)
		stored := bytes.Clone(cmds.Get([]byte("CMD-A")))
		if bytes.Contains(stored, []byte("ProfileList</string>")) || bytes.Contains(stored, []byte("CMD-A")) {
			t.Errorf("body stored in plain text: %q", stored)
		}
		return cmds.Put([]byte("CMD-B"), stored) // swap A's body onto B
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.RetrieveNextCommand(request("dev1"), false)
	if err != nil || got == nil || !bytes.Equal(got.Raw, a.Raw) {
		t.Fatalf("first command: %v %+v", err, got)
	}
	if _, err := m.queue.open("CMD-B", mustGet(t, s, "CMD-B")); err == nil {
		t.Fatal("a body moved onto another command opened")
	}
}

func mustGet(t *testing.T, s *Store, uuid string) []byte {
	t.Helper()
	var v []byte
	_ = s.DB().View(func(tx *bbolt.Tx) error {
		_, v, _ = bytes.Cut(bytes.Clone(tx.Bucket(bucketQueueCommands).Get([]byte(uuid))), []byte{0})
		return nil
	})
	return v
}
