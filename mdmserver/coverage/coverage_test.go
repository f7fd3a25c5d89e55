package coverage_test

import (
	"context"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/coverage"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

type devices []*inventory.Device

func (ds devices) ForEach(_ context.Context, fn func(*inventory.Device) error) error {
	for _, d := range ds {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

type answers map[string]access.Answer

func (a answers) Lookup(id string, _ time.Time) access.Answer { return a[id] }

func claim[T any](v T) *policies.Claim[T] { return &policies.Claim[T]{Value: v} }

func TestCompute(t *testing.T) {
	good := &policies.Posture{DiskEncrypted: claim(true), PasscodePresent: claim(true), OS: claim(policies.OSInfo{Version: "18.1"}), Jailbroken: claim(false)}
	laptop := &policies.Posture{DiskEncrypted: claim(false), ScreenLockEnabled: claim(true), OS: claim(policies.OSInfo{Version: "6.1"})}
	ds := devices{
		{ID: "a", OS: "ios", Group: "icu", State: inventory.StateActive},
		{ID: "b", OS: "ios", Group: "icu", State: inventory.StateActive},
		{ID: "c", OS: "ios", Group: "icu", State: inventory.StateLocked},
		{ID: "d", OS: "linux", Group: "", State: inventory.StateActive},
		{ID: "e", Platform: inventory.PlatformApple, Group: "icu", State: inventory.StateActive}, // OS not known yet
		{ID: "w", OS: "ios", Group: "icu", State: inventory.StateWiped},                          // not in the fleet
	}
	as := answers{
		"a": {Allow: true, Compliant: true, Posture: good},
		"b": {Allow: true, InGrace: true, Posture: good, Reasons: []policies.Reason{{Code: policies.CodeOSTooOld}}},
		"c": {Allow: false, Posture: good, Reasons: []policies.Reason{{Code: "device_locked"}}},
		"d": {Allow: false, Posture: laptop, Reasons: []policies.Reason{{Code: policies.CodeEncryptionOff}, {Code: policies.CodeReportStale}}},
		"e": {Allow: false, Reasons: []policies.Reason{{Code: "unknown_device"}}},
	}
	rep, err := coverage.Compute(context.Background(), ds, as, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("rows %+v, want apple/icu, ios/icu, linux/(none)", rep.Rows)
	}
	ios := rep.Rows[1]
	if ios.Platform != "ios" || ios.Devices != 3 || ios.Encrypted != 3 || ios.Passcode != 3 || ios.OSCurrent != 2 ||
		ios.NotJailbroken != 3 || ios.InGrace != 1 || ios.Denied != 1 || ios.Stale != 0 {
		t.Fatalf("ios/icu row %+v", ios)
	}
	linux := rep.Rows[2]
	if linux.Encrypted != 0 || linux.Passcode != 1 || linux.OSCurrent != 1 || linux.NotJailbroken != 0 || linux.Stale != 1 || linux.Denied != 1 {
		t.Fatalf("linux row %+v", linux)
	}
	if unknown := rep.Rows[0]; unknown.Platform != "apple" || unknown.Stale != 1 || unknown.Denied != 1 {
		t.Fatalf("device of unknown OS %+v", unknown)
	}
	if rep.Total.Devices != 5 || rep.Total.Denied != 3 {
		t.Fatalf("total %+v", rep.Total)
	}
	if len(rep.TopDenialReasons) != 4 || rep.TopDenialReasons[0].Devices != 1 {
		t.Fatalf("top reasons %+v", rep.TopDenialReasons)
	}
}
