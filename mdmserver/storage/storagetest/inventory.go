package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testpki"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testInventory is the contract of inventory.Repository and the inventory's rules over it.
func testInventory(t *testing.T, open Opener) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, Opener)
	}{
		{"repository round trip and reopen", inventoryRoundTrip},
		{"create, get and indexes", inventoryCreateGetAndIndexes},
		{"create validation", inventoryCreateValidation},
		{"state transitions", inventoryStateTransitions},
		{"update moves indexes", inventoryUpdateMovesIndexes},
		{"touch", inventoryTouch},
		{"concurrent updates", inventoryConcurrentUpdates},
		{"unit of work commits or leaves nothing", inventoryUnitOfWork},
		{"wipe status", inventoryWipe},
		{"link enrollment", inventoryLinkEnrollment},
		{"list paging", inventoryListPaging},
		{"list cursor survives inserts", inventoryListCursorSurvivesInserts},
		{"for each", inventoryForEach},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, open) })
	}
}

// invT0 is the inventory clock of these tests.
var invT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// inventoryService runs the inventory's rules on st with a clock stopped at now.
func inventoryService(st storage.Store, now time.Time) *inventory.Service {
	return inventory.NewService(storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx }),
		inventory.WithClock(func() time.Time { return now }))
}

// freshInventory opens a new empty store and an inventory service on it.
func freshInventory(t *testing.T, open Opener) (storage.Store, *inventory.Service) {
	t.Helper()
	st := Fresh(t, open)
	return st, inventoryService(st, invT0)
}

func agentDevice(owner, group string) inventory.Device {
	return inventory.Device{Platform: inventory.PlatformAgent, OS: "linux", Owner: owner, Group: group, Hostname: "ws"}
}

// inventoryRoundTrip checks that a record comes back as it was put, every field included, as
// the caller's own copy, also after a reopen; and that a View refuses writes.
func inventoryRoundTrip(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	full := inventory.Device{
		ID: inventory.NewID(), Platform: inventory.PlatformApple, OS: "ios", Owner: "alice", Group: "icu", Serial: "SN1",
		UDID: "UDID-1", EnrollmentID: "UDID-1", Hostname: "phone", EnrolledAt: invT0, LastSeen: invT0.Add(time.Minute),
		CertSerials: []string{"a1b"}, CertSHA256: []string{fmt.Sprintf("%064x", 1)}, State: inventory.StateLocked,
		StateChangedAt: invT0.Add(time.Hour), Enrollment: "e_1",
		Wipe: &inventory.WipeStatus{CommandID: "cmd-1", State: inventory.WipePending},
	}
	if err := st.Update(ctx, func(tx storage.Tx) error { return tx.Inventory().Put(ctx, &full) }); err != nil {
		t.Fatal(err)
	}
	check := func(st storage.Store, when string) {
		t.Helper()
		err := st.View(ctx, func(tx storage.Tx) error {
			r := tx.Inventory()
			for name, get := range map[string]func() (*inventory.Device, error){
				"id":         func() (*inventory.Device, error) { return r.Get(ctx, full.ID) },
				"enrollment": func() (*inventory.Device, error) { return r.GetByEnrollmentID(ctx, "UDID-1") },
				"serial":     func() (*inventory.Device, error) { return r.GetByCertSerial(ctx, "a1b") },
			} {
				got, err := get()
				if err != nil {
					return fmt.Errorf("by %s: %w", name, err)
				}
				if !sameJSON(got, &full) {
					t.Errorf("%s: by %s = %+v, want %+v", when, name, got, full)
				}
				got.CertSerials[0], got.Wipe.State = "ff", inventory.WipeIncomplete // the caller's own copy
			}
			if _, err := r.GetByCertSerial(ctx, ""); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("%s: empty serial: %v", when, err)
			}
			if _, err := r.GetByEnrollmentID(ctx, ""); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("%s: empty enrollment ID: %v", when, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check(st, "after commit")
	check(st, "read again")
	st = Reopen(t, open, st, dir)
	check(st, "after reopen")
	err := st.View(ctx, func(tx storage.Tx) error {
		if err := tx.Inventory().Put(ctx, &full); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want ErrReadOnly", err)
		}
		if err := tx.Inventory().Touch(ctx, full.ID, invT0.Add(time.Hour)); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Touch in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func inventoryCreateGetAndIndexes(t *testing.T, open Opener) {
	ctx := context.Background()
	_, s := freshInventory(t, open)
	d, err := s.Create(ctx, inventory.Device{
		Platform: inventory.PlatformApple, Owner: "alice", Group: "icu", UDID: "UDID-1", EnrollmentID: "UDID-1",
		CertSerials: []string{"0A:1B", "ff"}, Enrollment: "e_1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !inventory.ValidID(d.ID) || d.State != inventory.StateActive || !d.EnrolledAt.Equal(invT0) || !d.StateChangedAt.Equal(invT0) {
		t.Fatalf("created = %+v", d)
	}
	if !slices.Equal(d.CertSerials, []string{"a1b", "ff"}) {
		t.Errorf("serials = %v, want normalized", d.CertSerials)
	}
	for _, get := range []func() (*inventory.Device, error){
		func() (*inventory.Device, error) { return s.Get(ctx, d.ID) },
		func() (*inventory.Device, error) { return s.GetByEnrollmentID(ctx, "UDID-1") },
		func() (*inventory.Device, error) { return s.GetByCertSerial(ctx, "0x0A1B") },
		func() (*inventory.Device, error) { return s.GetByCertSerial(ctx, inventory.SerialHex(big.NewInt(255))) },
	} {
		got, err := get()
		if err != nil || got.ID != d.ID {
			t.Errorf("lookup = %+v, %v", got, err)
		}
	}
	for _, miss := range []func() (*inventory.Device, error){
		func() (*inventory.Device, error) { return s.Get(ctx, "d_0000000000000000") },
		func() (*inventory.Device, error) { return s.GetByEnrollmentID(ctx, "nope") },
		func() (*inventory.Device, error) { return s.GetByEnrollmentID(ctx, "") },
		func() (*inventory.Device, error) { return s.GetByCertSerial(ctx, "abc") },
		func() (*inventory.Device, error) { return s.GetByCertSerial(ctx, "zz") },
	} {
		if _, err := miss(); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("miss = %v, want ErrNotFound", err)
		}
	}
	// Identifiers belong to one device.
	if _, err := s.Create(ctx, inventory.Device{Platform: inventory.PlatformApple, EnrollmentID: "UDID-1"}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("duplicate enrollment id: %v", err)
	}
	if _, err := s.Create(ctx, inventory.Device{Platform: inventory.PlatformAgent, CertSerials: []string{"FF"}}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("duplicate serial: %v", err)
	}
	if _, err := s.Create(ctx, inventory.Device{ID: d.ID, Platform: inventory.PlatformAgent}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("duplicate id: %v", err)
	}
	// A preset ID (the agent enrollment picks it first) is kept.
	id := inventory.NewID()
	if got, err := s.Create(ctx, agentDevice("bob", "er")); err != nil || got.ID == id {
		t.Fatal(err)
	}
	if got, err := s.Create(ctx, inventory.Device{ID: id, Platform: inventory.PlatformAgent}); err != nil || got.ID != id {
		t.Errorf("preset id: %+v, %v", got, err)
	}
}

func inventoryCreateValidation(t *testing.T, open Opener) {
	_, s := freshInventory(t, open)
	for name, d := range map[string]inventory.Device{
		"platform":   {Platform: "blackberry"},
		"state":      {Platform: inventory.PlatformAgent, State: "zombie"},
		"id":         {ID: "x", Platform: inventory.PlatformAgent},
		"upper id":   {ID: "d_ABCDEF0123456789", Platform: inventory.PlatformAgent},
		"serial":     {Platform: inventory.PlatformAgent, CertSerials: []string{"xyz"}},
		"control":    {Platform: inventory.PlatformAgent, Hostname: "a\x1b[31m"},
		"long owner": {Platform: inventory.PlatformAgent, Owner: string(make([]byte, 300))},
		"wipe state": {Platform: inventory.PlatformAgent, Wipe: &inventory.WipeStatus{CommandID: "c", State: "done"}},
		"wipe cmd":   {Platform: inventory.PlatformAgent, Wipe: &inventory.WipeStatus{State: inventory.WipePending}},
	} {
		if _, err := s.Create(context.Background(), d); !errors.Is(err, inventory.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	many := inventory.Device{Platform: inventory.PlatformAgent}
	for i := range inventory.MaxCertSerials + 1 {
		many.CertSerials = append(many.CertSerials, fmt.Sprintf("%x", i+1))
	}
	if _, err := s.Create(context.Background(), many); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("too many serials: %v", err)
	}
}

func inventoryStateTransitions(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	at := invT0.Add(time.Hour)
	for _, tc := range []struct {
		path []inventory.State
		ok   bool
	}{
		{[]inventory.State{inventory.StateLocked, inventory.StateActive, inventory.StateLost, inventory.StateLocked, inventory.StateWiped, inventory.StateRetired}, true},
		{[]inventory.State{inventory.StateUnenrolled, inventory.StateRetired}, true},
		{[]inventory.State{inventory.StateRetired}, true},
		{[]inventory.State{inventory.StateWiped, inventory.StateActive}, false},
		{[]inventory.State{inventory.StateWiped, inventory.StateLost}, false},
		{[]inventory.State{inventory.StateUnenrolled, inventory.StateActive}, false},
		{[]inventory.State{inventory.StateUnenrolled, inventory.StateWiped}, false},
		{[]inventory.State{inventory.StateRetired, inventory.StateActive}, false},
		{[]inventory.State{inventory.StateRetired, inventory.StateUnenrolled}, false},
	} {
		d, _ := s.Create(ctx, agentDevice("o", "g"))
		var err error
		for _, state := range tc.path {
			if d2, e := s.SetState(ctx, d.ID, state, at); e != nil {
				err = e
				break
			} else if d2.State != state || !d2.StateChangedAt.Equal(at) {
				t.Errorf("%v: after SetState(%s) = %+v", tc.path, state, d2)
			}
		}
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, inventory.ErrInvalidTransition) {
			t.Errorf("%v: err = %v", tc.path, err)
		}
	}
	d, _ := s.Create(ctx, agentDevice("o", "g"))
	s.SetState(ctx, d.ID, inventory.StateLocked, at)
	again, err := s.SetState(ctx, d.ID, inventory.StateLocked, at.Add(time.Hour))
	if err != nil || !again.StateChangedAt.Equal(at) {
		t.Errorf("repeating a state moved state_changed_at: %+v, %v", again, err)
	}
	if _, err := s.SetState(ctx, d.ID, "gone", at); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("unknown state: %v", err)
	}
	if _, err := s.SetState(ctx, "d_0000000000000000", inventory.StateLocked, at); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	// Update enforces the same table and stamps state_changed_at when the caller does not.
	s.SetState(ctx, d.ID, inventory.StateWiped, at)
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.State = inventory.StateActive; return nil }); !errors.Is(err, inventory.ErrInvalidTransition) {
		t.Errorf("Update around the table: %v", err)
	}
	later := invT0.Add(2 * time.Hour)
	s2 := inventoryService(st, later)
	d3, _ := s.Create(ctx, agentDevice("o", "g"))
	got, err := s2.Update(ctx, d3.ID, func(d *inventory.Device) error { d.State = inventory.StateLost; return nil })
	if err != nil || got.State != inventory.StateLost || !got.StateChangedAt.Equal(later) {
		t.Errorf("Update state change = %+v, %v; want state_changed_at stamped %v", got, err, later)
	}
	got, _ = s2.Update(ctx, d3.ID, func(d *inventory.Device) error { d.Owner = "z"; return nil })
	if !got.StateChangedAt.Equal(later) {
		t.Errorf("unrelated update moved state_changed_at")
	}
}

// checkIndexes asserts that the indexes are exactly what the records imply: every identifier a
// record holds finds that record, and every other identifier in used finds nothing.
func checkIndexes(t *testing.T, st storage.Store, used ...string) {
	t.Helper()
	ctx := context.Background()
	err := st.View(ctx, func(tx storage.Tx) error {
		r := tx.Inventory()
		held := map[string]string{}
		err := r.ForEach(ctx, "", func(d *inventory.Device) error {
			for _, k := range append(slices.Clone(d.CertSerials), "enrollment:"+d.EnrollmentID) {
				held[k] = d.ID
			}
			return nil
		})
		if err != nil {
			return err
		}
		for k, id := range held {
			var got *inventory.Device
			if eid, ok := strings.CutPrefix(k, "enrollment:"); ok {
				if eid == "" {
					continue
				}
				got, err = r.GetByEnrollmentID(ctx, eid)
			} else {
				got, err = r.GetByCertSerial(ctx, k)
			}
			if err != nil || got.ID != id {
				t.Errorf("index entry %s = %+v, %v; want device %s", k, got, err, id)
			}
		}
		for _, k := range used {
			if _, ok := held[k]; ok {
				continue
			}
			var err error
			if eid, ok := strings.CutPrefix(k, "enrollment:"); ok {
				_, err = r.GetByEnrollmentID(ctx, eid)
			} else {
				_, err = r.GetByCertSerial(ctx, k)
			}
			if !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("stale index entry %s: %v", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sameJSON reports whether a and b encode to the same JSON: records compare by what is stored.
func sameJSON(a, b any) bool {
	ja, err := json.Marshal(a)
	if err != nil {
		return false
	}
	jb, err := json.Marshal(b)
	return err == nil && bytes.Equal(ja, jb)
}

func inventoryUpdateMovesIndexes(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	used := []string{"enrollment:E1", "enrollment:E2", "enrollment:E9", "1", "2", "3", "4"}
	d, _ := s.Create(ctx, inventory.Device{Platform: inventory.PlatformApple, EnrollmentID: "E1", CertSerials: []string{"01", "02"}})
	other, _ := s.Create(ctx, inventory.Device{Platform: inventory.PlatformApple, EnrollmentID: "E9"})
	_, err := s.Update(ctx, d.ID, func(d *inventory.Device) error {
		d.EnrollmentID = "E2"
		d.CertSerials = []string{"02", "03"}
		d.EnrolledAt = time.Time{} // ignored: enrolled_at is immutable
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]error{"E1": inventory.ErrNotFound, "E2": nil} {
		if _, err := s.GetByEnrollmentID(ctx, key); !errors.Is(err, want) {
			t.Errorf("enrollment %s: %v", key, err)
		}
	}
	for key, want := range map[string]error{"1": inventory.ErrNotFound, "2": nil, "3": nil} {
		if _, err := s.GetByCertSerial(ctx, key); !errors.Is(err, want) {
			t.Errorf("serial %s: %v", key, err)
		}
	}
	got, _ := s.Get(ctx, d.ID)
	if !got.EnrolledAt.Equal(invT0) {
		t.Errorf("enrolled_at changed to %v", got.EnrolledAt)
	}
	// Conflicts and fn errors write nothing.
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.EnrollmentID = "E9"; d.Owner = "x"; return nil }); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("conflicting update: %v", err)
	}
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error {
		d.CertSerials = append(d.CertSerials, "5")
		d.EnrollmentID = "E9"
		return nil
	}); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("conflicting update with a new serial: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.Owner = "y"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.ID = other.ID; return nil }); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("id change: %v", err)
	}
	got, _ = s.Get(ctx, d.ID)
	if got.Owner != "" || got.EnrollmentID != "E2" {
		t.Errorf("failed updates leaked: %+v", got)
	}
	checkIndexes(t, st, append(used, "5")...)

	// AddCert keeps serial and fingerprint; a malformed fingerprint is refused.
	ca := testpki.NewCA(t, "inventory test CA")
	cert, _ := ca.Issue(t, d.ID)
	if got, err := s.AddCert(ctx, d.ID, cert); err != nil || !slices.Contains(got.CertSerials, inventory.SerialHex(cert.SerialNumber)) ||
		!slices.Equal(got.CertSHA256, []string{inventory.CertFingerprint(cert)}) {
		t.Errorf("AddCert = %+v, %v", got, err)
	}
	if got, _ := s.AddCert(ctx, d.ID, cert); len(got.CertSHA256) != 1 {
		t.Errorf("re-adding a certificate duplicated it: %v", got.CertSHA256)
	}
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.CertSHA256 = append(d.CertSHA256, "ABC"); return nil }); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("junk fingerprint: %v", err)
	}

	// AddCertSerial: idempotent, conflicts across devices.
	if got, err := s.AddCertSerial(ctx, d.ID, "0:4"); err != nil || !slices.Contains(got.CertSerials, "4") {
		t.Errorf("AddCertSerial = %+v, %v", got, err)
	}
	if got, _ := s.AddCertSerial(ctx, d.ID, "04"); len(got.CertSerials) != 4 {
		t.Errorf("re-adding a serial duplicated it: %v", got.CertSerials)
	}
	if _, err := s.AddCertSerial(ctx, other.ID, "4"); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("serial of another device: %v", err)
	}
	if _, err := s.AddCertSerial(ctx, other.ID, "q"); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("junk serial: %v", err)
	}
	if dev, err := s.GetByCertSerial(ctx, "4"); err != nil || dev.ID != d.ID {
		t.Errorf("new serial lookup: %+v, %v", dev, err)
	}
	checkIndexes(t, st, append(used, "5", inventory.SerialHex(cert.SerialNumber))...)
}

func inventoryTouch(t *testing.T, open Opener) {
	ctx := context.Background()
	_, s := freshInventory(t, open)
	d, _ := s.Create(ctx, agentDevice("o", "g"))
	if err := s.Touch(ctx, d.ID, invT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Touch(ctx, d.ID, invT0) // older: ignored
	got, _ := s.Get(ctx, d.ID)
	if !got.LastSeen.Equal(invT0.Add(time.Minute)) {
		t.Errorf("last_seen = %v", got.LastSeen)
	}
	if err := s.Touch(ctx, "d_0000000000000000", invT0); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("touch unknown: %v", err)
	}
}

func inventoryConcurrentUpdates(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	d, _ := s.Create(ctx, agentDevice("o", "g"))
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.AddCertSerial(ctx, d.ID, fmt.Sprintf("%x", w*1000+i+1)); err != nil {
					t.Error(err)
				}
				if err := s.Touch(ctx, d.ID, invT0.Add(time.Duration(w*each+i)*time.Second)); err != nil {
					t.Error(err)
				}
				if _, err := s.Get(ctx, d.ID); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, d.ID)
	if len(got.CertSerials) != workers*each {
		t.Errorf("%d serials after concurrent adds, want %d (lost update)", len(got.CertSerials), workers*each)
	}
	if want := invT0.Add(time.Duration(workers*each-1) * time.Second); !got.LastSeen.Equal(want) {
		t.Errorf("last_seen = %v, want %v", got.LastSeen, want)
	}
	checkIndexes(t, st)
}

// inventoryUnitOfWork checks that a device change and another repository's write in one unit
// of work commit together, or roll back together.
func inventoryUnitOfWork(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	d, _ := s.Create(ctx, agentDevice("o", "g"))
	k1, k2 := idempotency.NewKey("tok", "/lock", "1"), idempotency.NewKey("tok", "/wipe", "2")
	// The caller's own write and the inventory change commit together...
	err := st.Update(ctx, func(tx storage.Tx) error {
		if _, err := inventory.Update(ctx, tx.Inventory(), d.ID, invT0, func(d *inventory.Device) error { d.State = inventory.StateLocked; return nil }); err != nil {
			return err
		}
		return idempotency.Save(ctx, tx.Idempotency(), k1, "locked "+d.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	// ...or roll back together.
	errAudit := errors.New("audit append failed")
	err = st.Update(ctx, func(tx storage.Tx) error {
		got, err := tx.Inventory().Get(ctx, d.ID)
		if err != nil {
			return err
		}
		got.State = inventory.StateWiped
		if err := inventory.Save(ctx, tx.Inventory(), got, invT0); err != nil {
			return err
		}
		if err := idempotency.Save(ctx, tx.Idempotency(), k2, "wiped"); err != nil {
			return err
		}
		return errAudit
	})
	if !errors.Is(err, errAudit) {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, d.ID)
	if got.State != inventory.StateLocked {
		t.Errorf("state = %s, want locked (wipe rolled back)", got.State)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		var ans string
		if ok, err := idempotency.Load(ctx, tx.Idempotency(), k1, &ans); err != nil || !ok || ans != "locked "+d.ID {
			t.Errorf("the committed write: %q, %v, %v", ans, ok, err)
		}
		if ok, err := idempotency.Load(ctx, tx.Idempotency(), k2, &ans); err != nil || ok {
			t.Errorf("the rolled back write is there: %v, %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
