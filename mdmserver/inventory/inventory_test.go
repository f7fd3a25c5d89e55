package inventory

import (
	"context"
	"errors"
	"testing"
)

// The storage tests of the inventory (its rules over a Repository, on every backend) are in
// mdmserver/storage/storagetest/inventory.go; these need none.

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
	// The filter is checked before the repository is asked: nil stands in for it.
	if _, _, err := List(context.Background(), nil, Filter{State: "bogus"}, "", 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("List: %v", err)
	}
	if _, err := Count(context.Background(), nil, Filter{State: "bogus"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Count: %v", err)
	}
	if _, _, err := List(context.Background(), nil, Filter{Wipe: "done"}, "", 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("List by an unknown wipe state: %v", err)
	}
}

func TestFilterMatches(t *testing.T) {
	d := &Device{State: StateLocked, Group: "icu", Owner: "alice", Wipe: &WipeStatus{CommandID: "c", State: WipePending}}
	for f, want := range map[Filter]bool{
		{}:                                    true,
		{State: StateLocked, Group: "icu"}:    true,
		{Owner: "bob"}:                        false,
		{Wipe: WipePending}:                   true,
		{Wipe: WipeIncomplete}:                false,
		{Wipe: WipePending, State: StateLost}: false,
	} {
		if got := f.Matches(d); got != want {
			t.Errorf("%+v.Matches = %v, want %v", f, got, want)
		}
	}
	if (Filter{Wipe: WipePending}).Matches(&Device{}) {
		t.Error("a device without a wipe matched a wipe filter")
	}
}

func TestWipeStatus(t *testing.T) {
	var none *WipeStatus
	if none.Pending() || none.validate() != nil {
		t.Error("no wipe is pending or invalid")
	}
	d := &Device{Wipe: &WipeStatus{CommandID: "old", State: WipeIncomplete}}
	d.OrderWipe("new")
	if !d.Wipe.Pending() || d.Wipe.CommandID != "new" || d.Wipe.validate() != nil {
		t.Errorf("after OrderWipe: %+v", d.Wipe)
	}
	for _, bad := range []*WipeStatus{{State: WipePending}, {CommandID: "c", State: "finished"}, {CommandID: string(make([]byte, 300)), State: WipePending}} {
		if bad.validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	id := NewID()
	if got, err := decodeCursor(encodeCursor(id)); err != nil || got != id {
		t.Errorf("round trip of %s = %q, %v", id, got, err)
	}
	for _, bad := range []string{"!!", "djE6eA", "x" + string(make([]byte, 200))} {
		if _, err := decodeCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}
