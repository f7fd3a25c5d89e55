package inventory

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/testpki"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newStore(tb testing.TB) (*Store, *bbolt.DB) {
	tb.Helper()
	db, err := bbolt.Open(filepath.Join(tb.TempDir(), "inv.db"), 0o600, &bbolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	s, err := New(db, WithClock(func() time.Time { return t0 }))
	if err != nil {
		tb.Fatal(err)
	}
	return s, db
}

func agent(owner, group string) Device {
	return Device{Platform: PlatformAgent, OS: "linux", Owner: owner, Group: group, Hostname: "ws"}
}

func TestCreateGetAndIndexes(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	d, err := s.Create(ctx, Device{
		Platform: PlatformApple, Owner: "alice", Group: "icu", UDID: "UDID-1", EnrollmentID: "UDID-1",
		CertSerials: []string{"0A:1B", "ff"}, Enrollment: "e_1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(d.ID) || d.State != StateActive || !d.EnrolledAt.Equal(t0) || !d.StateChangedAt.Equal(t0) {
		t.Fatalf("created = %+v", d)
	}
	if !slices.Equal(d.CertSerials, []string{"a1b", "ff"}) {
		t.Errorf("serials = %v, want normalized", d.CertSerials)
	}
	for _, get := range []func() (*Device, error){
		func() (*Device, error) { return s.Get(ctx, d.ID) },
		func() (*Device, error) { return s.GetByEnrollmentID(ctx, "UDID-1") },
		func() (*Device, error) { return s.GetByCertSerial(ctx, "0x0A1B") },
		func() (*Device, error) { return s.GetByCertSerial(ctx, SerialHex(big.NewInt(255))) },
	} {
		got, err := get()
		if err != nil || got.ID != d.ID {
			t.Errorf("lookup = %+v, %v", got, err)
		}
	}
	for _, miss := range []func() (*Device, error){
		func() (*Device, error) { return s.Get(ctx, "d_0000000000000000") },
		func() (*Device, error) { return s.GetByEnrollmentID(ctx, "nope") },
		func() (*Device, error) { return s.GetByEnrollmentID(ctx, "") },
		func() (*Device, error) { return s.GetByCertSerial(ctx, "abc") },
		func() (*Device, error) { return s.GetByCertSerial(ctx, "zz") },
	} {
		if _, err := miss(); !errors.Is(err, ErrNotFound) {
			t.Errorf("miss = %v, want ErrNotFound", err)
		}
	}
	// Identifiers belong to one device.
	if _, err := s.Create(ctx, Device{Platform: PlatformApple, EnrollmentID: "UDID-1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate enrollment id: %v", err)
	}
	if _, err := s.Create(ctx, Device{Platform: PlatformAgent, CertSerials: []string{"FF"}}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate serial: %v", err)
	}
	if _, err := s.Create(ctx, Device{ID: d.ID, Platform: PlatformAgent}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate id: %v", err)
	}
	// A preset ID (the agent enrollment picks it first) is kept.
	id := NewID()
	if got, err := s.Create(ctx, agent("bob", "er")); err != nil || got.ID == id {
		t.Fatal(err)
	}
	if got, err := s.Create(ctx, Device{ID: id, Platform: PlatformAgent}); err != nil || got.ID != id {
		t.Errorf("preset id: %+v, %v", got, err)
	}
}

func TestCreateValidation(t *testing.T) {
	s, _ := newStore(t)
	for name, d := range map[string]Device{
		"platform":   {Platform: "android"},
		"state":      {Platform: PlatformAgent, State: "zombie"},
		"id":         {ID: "x", Platform: PlatformAgent},
		"upper id":   {ID: "d_ABCDEF0123456789", Platform: PlatformAgent},
		"serial":     {Platform: PlatformAgent, CertSerials: []string{"xyz"}},
		"control":    {Platform: PlatformAgent, Hostname: "a\x1b[31m"},
		"long owner": {Platform: PlatformAgent, Owner: string(make([]byte, 300))},
	} {
		if _, err := s.Create(context.Background(), d); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	many := Device{Platform: PlatformAgent}
	for i := range MaxCertSerials + 1 {
		many.CertSerials = append(many.CertSerials, fmt.Sprintf("%x", i+1))
	}
	if _, err := s.Create(context.Background(), many); !errors.Is(err, ErrInvalid) {
		t.Errorf("too many serials: %v", err)
	}
}

func TestStateTransitions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	at := t0.Add(time.Hour)
	for _, tc := range []struct {
		path []State
		ok   bool
	}{
		{[]State{StateLocked, StateActive, StateLost, StateLocked, StateWiped, StateRetired}, true},
		{[]State{StateUnenrolled, StateRetired}, true},
		{[]State{StateRetired}, true},
		{[]State{StateWiped, StateActive}, false},
		{[]State{StateWiped, StateLost}, false},
		{[]State{StateUnenrolled, StateActive}, false},
		{[]State{StateUnenrolled, StateWiped}, false},
		{[]State{StateRetired, StateActive}, false},
		{[]State{StateRetired, StateUnenrolled}, false},
	} {
		d, _ := s.Create(ctx, agent("o", "g"))
		var err error
		for _, st := range tc.path {
			if d2, e := s.SetState(ctx, d.ID, st, at); e != nil {
				err = e
				break
			} else if d2.State != st || !d2.StateChangedAt.Equal(at) {
				t.Errorf("%v: after SetState(%s) = %+v", tc.path, st, d2)
			}
		}
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("%v: err = %v", tc.path, err)
		}
	}
	d, _ := s.Create(ctx, agent("o", "g"))
	s.SetState(ctx, d.ID, StateLocked, at)
	again, err := s.SetState(ctx, d.ID, StateLocked, at.Add(time.Hour))
	if err != nil || !again.StateChangedAt.Equal(at) {
		t.Errorf("repeating a state moved state_changed_at: %+v, %v", again, err)
	}
	if _, err := s.SetState(ctx, d.ID, "gone", at); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown state: %v", err)
	}
	if _, err := s.SetState(ctx, "d_0000000000000000", StateLocked, at); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v", err)
	}
	// Update enforces the same table and stamps state_changed_at when the caller does not.
	s.SetState(ctx, d.ID, StateWiped, at)
	if _, err := s.Update(ctx, d.ID, func(d *Device) error { d.State = StateActive; return nil }); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("Update around the table: %v", err)
	}
	later := t0.Add(2 * time.Hour)
	s2, err := New(s.db, WithClock(func() time.Time { return later }))
	if err != nil {
		t.Fatal(err)
	}
	d3, _ := s.Create(ctx, agent("o", "g"))
	got, err := s2.Update(ctx, d3.ID, func(d *Device) error { d.State = StateLost; return nil })
	if err != nil || got.State != StateLost || !got.StateChangedAt.Equal(later) {
		t.Errorf("Update state change = %+v, %v; want state_changed_at stamped %v", got, err, later)
	}
	got, _ = s2.Update(ctx, d3.ID, func(d *Device) error { d.Owner = "z"; return nil })
	if !got.StateChangedAt.Equal(later) {
		t.Errorf("unrelated update moved state_changed_at")
	}
}

func TestUpdateMovesIndexes(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t)
	d, _ := s.Create(ctx, Device{Platform: PlatformApple, EnrollmentID: "E1", CertSerials: []string{"01", "02"}})
	other, _ := s.Create(ctx, Device{Platform: PlatformApple, EnrollmentID: "E9"})
	_, err := s.Update(ctx, d.ID, func(d *Device) error {
		d.EnrollmentID = "E2"
		d.CertSerials = []string{"02", "03"}
		d.EnrolledAt = time.Time{} // ignored: enrolled_at is immutable
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]error{"E1": ErrNotFound, "E2": nil} {
		if _, err := s.GetByEnrollmentID(ctx, key); !errors.Is(err, want) {
			t.Errorf("enrollment %s: %v", key, err)
		}
	}
	for key, want := range map[string]error{"1": ErrNotFound, "2": nil, "3": nil} {
		if _, err := s.GetByCertSerial(ctx, key); !errors.Is(err, want) {
			t.Errorf("serial %s: %v", key, err)
		}
	}
	got, _ := s.Get(ctx, d.ID)
	if !got.EnrolledAt.Equal(t0) {
		t.Errorf("enrolled_at changed to %v", got.EnrolledAt)
	}
	// Conflicts and fn errors write nothing.
	if _, err := s.Update(ctx, d.ID, func(d *Device) error { d.EnrollmentID = "E9"; d.Owner = "x"; return nil }); !errors.Is(err, ErrConflict) {
		t.Errorf("conflicting update: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, d.ID, func(d *Device) error { d.Owner = "y"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if _, err := s.Update(ctx, d.ID, func(d *Device) error { d.ID = other.ID; return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("id change: %v", err)
	}
	got, _ = s.Get(ctx, d.ID)
	if got.Owner != "" || got.EnrollmentID != "E2" {
		t.Errorf("failed updates leaked: %+v", got)
	}
	checkIndexes(t, db)

	// AddCert keeps serial and fingerprint; a malformed fingerprint is refused.
	ca := testpki.NewCA(t, "inventory test CA")
	cert, _ := ca.Issue(t, d.ID)
	if got, err := s.AddCert(ctx, d.ID, cert); err != nil || !slices.Contains(got.CertSerials, SerialHex(cert.SerialNumber)) ||
		!slices.Equal(got.CertSHA256, []string{CertFingerprint(cert)}) {
		t.Errorf("AddCert = %+v, %v", got, err)
	}
	if got, _ := s.AddCert(ctx, d.ID, cert); len(got.CertSHA256) != 1 {
		t.Errorf("re-adding a certificate duplicated it: %v", got.CertSHA256)
	}
	if _, err := s.Update(ctx, d.ID, func(d *Device) error { d.CertSHA256 = append(d.CertSHA256, "ABC"); return nil }); !errors.Is(err, ErrInvalid) {
		t.Errorf("junk fingerprint: %v", err)
	}

	// AddCertSerial: idempotent, conflicts across devices.
	if got, err := s.AddCertSerial(ctx, d.ID, "0:4"); err != nil || !slices.Contains(got.CertSerials, "4") {
		t.Errorf("AddCertSerial = %+v, %v", got, err)
	}
	if got, _ := s.AddCertSerial(ctx, d.ID, "04"); len(got.CertSerials) != 4 {
		t.Errorf("re-adding a serial duplicated it: %v", got.CertSerials)
	}
	if _, err := s.AddCertSerial(ctx, other.ID, "4"); !errors.Is(err, ErrConflict) {
		t.Errorf("serial of another device: %v", err)
	}
	if _, err := s.AddCertSerial(ctx, other.ID, "q"); !errors.Is(err, ErrInvalid) {
		t.Errorf("junk serial: %v", err)
	}
	if dev, err := s.GetByCertSerial(ctx, "4"); err != nil || dev.ID != d.ID {
		t.Errorf("new serial lookup: %+v, %v", dev, err)
	}
	checkIndexes(t, db)
}

// checkIndexes asserts that the index buckets are exactly what the records imply.
func checkIndexes(t *testing.T, db *bbolt.DB) {
	t.Helper()
	wantEnr, wantCert := map[string]string{}, map[string]string{}
	db.View(func(tx *bbolt.Tx) error {
		tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			d, err := decode(string(k), v)
			if err != nil {
				t.Fatal(err)
			}
			if d.EnrollmentID != "" {
				wantEnr[d.EnrollmentID] = d.ID
			}
			for _, sn := range d.CertSerials {
				wantCert[sn] = d.ID
			}
			return nil
		})
		for name, want := range map[string]map[string]string{string(bucketByEnrollment): wantEnr, string(bucketByCert): wantCert} {
			got := map[string]string{}
			tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error { got[string(k)] = string(v); return nil })
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("index %s = %v, want %v", name, got, want)
			}
		}
		return nil
	})
}

func TestTouch(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	d, _ := s.Create(ctx, agent("o", "g"))
	if err := s.Touch(ctx, d.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Touch(ctx, d.ID, t0) // older: ignored
	got, _ := s.Get(ctx, d.ID)
	if !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Errorf("last_seen = %v", got.LastSeen)
	}
	if err := s.Touch(ctx, "d_0000000000000000", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("touch unknown: %v", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t)
	d, _ := s.Create(ctx, agent("o", "g"))
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
				if err := s.Touch(ctx, d.ID, t0.Add(time.Duration(w*each+i)*time.Second)); err != nil {
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
	if want := t0.Add(time.Duration(workers*each-1) * time.Second); !got.LastSeen.Equal(want) {
		t.Errorf("last_seen = %v, want %v", got.LastSeen, want)
	}
	checkIndexes(t, db)
}

func TestTxVariants(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t)
	d, _ := s.Create(ctx, agent("o", "g"))
	audit := []byte("audit_test")
	// The caller's own write and the inventory change commit together...
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(audit)
		if err != nil {
			return err
		}
		if _, err := s.UpdateTx(tx, d.ID, func(d *Device) error { d.State = StateLocked; return nil }); err != nil {
			return err
		}
		return b.Put([]byte("1"), []byte("locked "+d.ID))
	})
	if err != nil {
		t.Fatal(err)
	}
	// ...or roll back together.
	errAudit := errors.New("audit append failed")
	err = db.Update(func(tx *bbolt.Tx) error {
		got, err := s.GetTx(tx, d.ID)
		if err != nil {
			return err
		}
		got.State = StateWiped
		if err := s.PutTx(tx, got); err != nil {
			return err
		}
		return errAudit
	})
	if !errors.Is(err, errAudit) {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, d.ID)
	if got.State != StateLocked {
		t.Errorf("state = %s, want locked (wipe rolled back)", got.State)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	groups, owners := []string{"icu", "er", "ward"}, []string{"alice", "bob", "carol", "dave"}
	states := []State{StateActive, StateActive, StateLocked, StateLost, StateRetired}
	all := make([]Device, 0, 2500)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for i := range 2500 {
			d := &Device{ID: NewID(), Platform: PlatformAgent, Group: groups[i%3], Owner: owners[i%4],
				State: states[i%5], EnrolledAt: t0, StateChangedAt: t0}
			if err := s.PutTx(tx, d); err != nil {
				return err
			}
			all = append(all, *d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f     Filter
		limit int
	}{
		{Filter{}, 0},
		{Filter{}, 333},
		{Filter{Group: "icu"}, 100},
		{Filter{State: StateLocked, Owner: "carol"}, 7},
		{Filter{Group: "er", Owner: "bob", State: StateActive}, 1},
		{Filter{Owner: "nobody"}, 10},
		{Filter{}, 5000}, // capped at MaxLimit
	} {
		want := map[string]bool{}
		for _, d := range all {
			if tc.f.match(&filterFields{State: d.State, Group: d.Group, Owner: d.Owner}) {
				want[d.ID] = true
			}
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			page, next, err := s.List(ctx, tc.f, cursor, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			wantLen := tc.limit
			if wantLen <= 0 {
				wantLen = DefaultLimit
			}
			if len(page) > min(wantLen, MaxLimit) {
				t.Fatalf("%+v: page of %d", tc.f, len(page))
			}
			for _, d := range page {
				if seen[d.ID] {
					t.Fatalf("%+v: %s returned twice", tc.f, d.ID)
				}
				if !want[d.ID] {
					t.Fatalf("%+v: %s does not match", tc.f, d.ID)
				}
				seen[d.ID] = true
			}
			if next == "" {
				break
			}
			if len(page) == 0 {
				t.Fatalf("%+v: empty page with a next cursor", tc.f)
			}
			cursor = next
		}
		if len(seen) != len(want) {
			t.Errorf("%+v: saw %d of %d matches in %d pages", tc.f, len(seen), len(want), pages)
		}
		n, err := s.Count(ctx, tc.f)
		if err != nil || n != len(want) {
			t.Errorf("Count(%+v) = %d, %v; want %d", tc.f, n, err, len(want))
		}
	}
	for _, bad := range []string{"!!", "djE6eA", "x" + string(make([]byte, 200))} {
		if _, _, err := s.List(ctx, Filter{}, bad, 10); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func TestListCursorSurvivesInserts(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	orig := map[string]bool{}
	for range 300 {
		d, _ := s.Create(ctx, agent("o", "g"))
		orig[d.ID] = true
	}
	seen := map[string]int{}
	cursor := ""
	for {
		page, next, err := s.List(ctx, Filter{}, cursor, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			seen[d.ID]++
		}
		for range 20 { // churn between pages
			s.Create(ctx, agent("o", "g"))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for id := range orig {
		if seen[id] != 1 {
			t.Errorf("%s seen %d times", id, seen[id])
		}
	}
}

func TestForEach(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	want := map[string]bool{}
	for range forEachChunk*2 + 7 {
		d, _ := s.Create(ctx, agent("o", "g"))
		want[d.ID] = true
	}
	seen := map[string]bool{}
	prev := ""
	// fn writes to the same database: ForEach must not hold a transaction while calling it.
	err := s.ForEach(ctx, func(d *Device) error {
		if seen[d.ID] || d.ID <= prev {
			t.Fatalf("%s out of order or repeated", d.ID)
		}
		seen[d.ID], prev = true, d.ID
		_, err := s.SetState(ctx, d.ID, StateLocked, t0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(want) {
		t.Errorf("ForEach saw %d of %d", len(seen), len(want))
	}
	if n, _ := s.Count(ctx, Filter{State: StateLocked}); n != len(want) {
		t.Errorf("%d locked, want %d", n, len(want))
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.ForEach(ctx, func(*Device) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("error did not stop the pass: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.ForEach(cctx, func(*Device) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"0A:1B": "a1b", "0x00ff": "ff", "FF": "ff", "0": "0", "00": "0"} {
		if got, ok := NormalizeSerial(in); !ok || got != want {
			t.Errorf("NormalizeSerial(%q) = %q, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "-1", "+1", "0x", "g", "1 2", string(make([]byte, 70))} {
		if _, ok := NormalizeSerial(bad); ok {
			t.Errorf("NormalizeSerial(%q) accepted", bad)
		}
	}
}

func TestCanTransitionTable(t *testing.T) {
	for _, from := range States {
		if !CanTransition(from, StateRetired) {
			t.Errorf("%s -> retired not allowed", from)
		}
		if !CanTransition(from, from) {
			t.Errorf("%s -> %s (no-op) not allowed", from, from)
		}
	}
	for _, to := range States {
		if to != StateRetired && to != StateWiped && CanTransition(StateWiped, to) {
			t.Errorf("wiped -> %s allowed", to)
		}
		if to != StateRetired && CanTransition(StateRetired, to) {
			t.Errorf("retired -> %s allowed", to)
		}
	}
	if CanTransition("bogus", "bogus") {
		t.Error("unknown state accepted")
	}
}

func TestListRejectsUnknownState(t *testing.T) {
	s, _ := newStore(t)
	if _, _, err := s.List(context.Background(), Filter{State: "bogus"}, "", 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("List: %v", err)
	}
	if _, err := s.Count(context.Background(), Filter{State: "bogus"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Count: %v", err)
	}
}
