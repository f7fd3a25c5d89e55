package boltstore

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/micromdm/nanolib/storage/kv"
	"github.com/micromdm/nanomdm/mdm"
	"github.com/micromdm/nanomdm/test/e2e"
)

// nanomdmDir returns the nanomdm module directory this package builds
// against, whose test/e2e reads testdata relative to itself.
func nanomdmDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/micromdm/nanomdm").Output()
	if err != nil {
		t.Fatalf("locating the nanomdm module (needs the go tool on PATH): %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go list returned no directory for github.com/micromdm/nanomdm (is the module downloaded?)")
	}
	return dir
}

func TestNanoMDME2E(t *testing.T) {
	s := openTestStore(t)
	st, err := NewMDMStorage(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(nanomdmDir(t), "test", "e2e"))
	e2e.TestE2E(t, context.Background(), st)
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// drainQueue walks the device's nanomdm command queue through the storage
// API, acknowledging each command, and returns the command UUIDs in order.
func drainQueue(t *testing.T, st *MDMStorage, id string) []string {
	t.Helper()
	ctx := context.Background()
	req := mdm.NewRequestWithContext(ctx, nil)
	req.EnrollID = &mdm.EnrollID{ID: id, Type: mdm.Device}
	var got []string
	for range 1000 {
		cmd, err := st.RetrieveNextCommand(req, false)
		if err != nil {
			t.Fatal(err)
		}
		if cmd == nil {
			return got
		}
		got = append(got, cmd.CommandUUID)
		err = st.StoreCommandReport(req, &mdm.CommandResults{CommandUUID: cmd.CommandUUID, Status: "Acknowledged", Raw: []byte("<plist/>")})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("queue did not drain")
	return nil
}

// EnqueueCommand writes through the parent queue bucket while its own kv
// transaction is open; other transactions may be open at the same time.
// With a bbolt write transaction held per kv transaction this deadlocks.
func TestEnqueueWhileTxnOpenDoesNotDeadlock(t *testing.T) {
	s := openTestStore(t)
	st, err := NewMDMStorage(s)
	if err != nil {
		t.Fatal(err)
	}
	queue, err := s.Bucket(MDMBucketPrefix + "queue")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	finish := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// A transaction on the same bucket stays open across the enqueues.
		done <- kv.PerformCRUDBucketTxn(ctx, queue, func(ctx context.Context, b kv.CRUDBucket) error {
			if err := b.Set(ctx, "hale.open-txn", []byte("x")); err != nil {
				return err
			}
			<-finish
			return nil
		})
	}()

	const devices, commands = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, devices*commands)
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("DEVICE-%d", d)
			for c := range commands {
				cmd := &mdm.Command{CommandUUID: fmt.Sprintf("CMD-%d-%d", d, c), Raw: []byte("<plist/>")}
				cmd.Command.RequestType = "DeviceLock"
				perID, err := st.EnqueueCommand(ctx, []string{id}, cmd)
				if err == nil && len(perID) > 0 {
					err = fmt.Errorf("enqueue %s: %v", cmd.CommandUUID, perID)
				}
				errs <- err
			}
		}()
	}
	enqueued := make(chan struct{})
	go func() { wg.Wait(); close(enqueued) }()
	select {
	case <-enqueued:
	case <-time.After(30 * time.Second):
		t.Fatal("EnqueueCommand blocked while another kv transaction was open (deadlock)")
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(finish)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("open transaction could not commit after the enqueues (deadlock)")
	}
	if has, err := queue.Has(ctx, "hale.open-txn"); err != nil || !has {
		t.Errorf("open transaction's write not committed: %v, %v", has, err)
	}
	for d := range devices {
		got := drainQueue(t, st, fmt.Sprintf("DEVICE-%d", d))
		var want []string
		for c := range commands {
			want = append(want, fmt.Sprintf("CMD-%d-%d", d, c))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("device %d queue = %v, want %v", d, got, want)
		}
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}
