package httpapi

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
)

// The wire form of a device is the record's own JSON, byte for byte: a field added to the record
// and not to api.Device fails here (the record below must set every field).
func TestDeviceWireForm(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	d := &inventory.Device{
		ID: "d_0123456789abcdef", Platform: inventory.PlatformApple, OS: "ios", Owner: "ana", Group: "ward-3",
		Serial: "F2LXXXX", UDID: "00008030-0001", EnrollmentID: "00008030-0001", Hostname: "ana-phone",
		EnrolledAt: at, LastSeen: at.Add(time.Hour), CertSerials: []string{"1a"}, CertSHA256: []string{"ff"},
		State: inventory.StateLocked, StateChangedAt: at.Add(2 * time.Hour), Enrollment: "e_1", UserEnrollment: true,
		Wipe: &inventory.WipeStatus{CommandID: "c_1", State: inventory.WipePending}, AgentVersion: "v1.4.0",
	}
	v := reflect.ValueOf(*d)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test record leaves %s unset", v.Type().Field(i).Name)
		}
	}
	want, _ := json.Marshal(d)
	got, _ := json.Marshal(Device(d))
	if string(got) != string(want) {
		t.Errorf("wire form\n got %s\nwant %s", got, want)
	}
}
