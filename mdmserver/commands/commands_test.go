package commands

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/mdm"
	"go.etcd.io/bbolt"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const securityInfo = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>CommandUUID</key><string>C1</string><key>Status</key><string>Acknowledged</string>
<key>UDID</key><string>U1</string>
<key>SecurityInfo</key><dict>
  <key>HardwareEncryptionCaps</key><integer>3</integer>
  <key>PasscodePresent</key><true/><key>PasscodeCompliant</key><false/>
  <key>PasscodeCompliantWithProfiles</key><true/>
</dict></dict></plist>`

func TestResultStateTransitions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now().UTC()
	rec := &Record{UUID: "C1", EnrollmentID: "U1", RequestType: "SecurityInfo", State: StatePushed, CreatedAt: now, UpdatedAt: now}
	if err := s.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	res := &Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "NotNow", ReceivedAt: now}
	if _, err := s.saveResult(res, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "U1", "C1"); got.State != StateNotNow {
		t.Fatalf("after NotNow: %s", got.State)
	}
	res = &Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Acknowledged", ReceivedAt: now}
	if err := parse([]byte(securityInfo), res); err != nil {
		t.Fatal(err)
	}
	if _, err := s.saveResult(res, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "U1", "C1")
	if got.State != StateAcknowledged {
		t.Fatalf("after Acknowledged: %s", got.State)
	}
	// A late duplicate answer (the device resent after a lost response) does not rewrite history.
	dup := &Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Error", ReceivedAt: now.Add(time.Second)}
	if _, err := s.saveResult(dup, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "U1", "C1"); got.State != StateAcknowledged {
		t.Fatalf("duplicate answer changed state to %s", got.State)
	}
	stored, err := s.Result(ctx, "U1", "C1")
	if err != nil || stored.SecurityInfo == nil || !*stored.SecurityInfo.PasscodePresent || *stored.SecurityInfo.HardwareEncryptionCaps != 3 {
		t.Fatalf("stored result %+v, %v", stored, err)
	}
	// A result for a command enqueued outside Hale is kept without a record.
	if _, err := s.saveResult(&Result{EnrollmentID: "U1", CommandUUID: "X", Status: "Acknowledged"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "U1", "X"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record invented for a foreign command: %v", err)
	}
	if all, _ := s.Results(ctx, "U1"); len(all) != 2 {
		t.Fatalf("Results = %d", len(all))
	}
	if list, _ := s.List(ctx, "U1"); len(list) != 1 {
		t.Fatalf("List = %d", len(list))
	}
	if list, _ := s.List(ctx, "U"); len(list) != 0 {
		t.Fatal("prefix of another enrollment id matched")
	}
}

func TestParseInfersRequestType(t *testing.T) {
	for body, want := range map[string]string{
		securityInfo: "SecurityInfo",
		`<plist><dict><key>QueryResponses</key><dict><key>OSVersion</key><string>17.4</string></dict></dict></plist>`:                  "DeviceInformation",
		`<plist><dict><key>ProfileList</key><array><dict><key>PayloadIdentifier</key><string>p</string></dict></array></dict></plist>`: "ProfileList",
	} {
		res := &Result{}
		if err := parse([]byte(body), res); err != nil || res.RequestType != want {
			t.Errorf("parse gave %q, %v; want %s", res.RequestType, err, want)
		}
	}
	if err := parse([]byte(`<plist><dict><key>SecurityInfo</key><string>x</string></dict></plist>`), &Result{}); err == nil {
		t.Error("a SecurityInfo of the wrong type parsed")
	}
}

func TestEnrollmentID(t *testing.T) {
	dev := &mdm.Enrollment{UDID: "U1"}
	user := &mdm.Enrollment{UDID: "U1", UserID: "USER"}
	if EnrollmentID(dev) != "U1" || EnrollmentID(user) != "U1:USER" || EnrollmentID(&mdm.Enrollment{}) != "" {
		t.Fatal("enrollment ids do not match nanomdm's")
	}
}

func FuzzParseResult(f *testing.F) {
	f.Add([]byte(securityInfo))
	f.Add([]byte(`<plist><dict><key>ProfileList</key><array/></dict></plist>`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r1, r2 Result
		err1, err2 := parse(b, &r1), parse(b, &r2)
		if (err1 == nil) != (err2 == nil) || r1.RequestType != r2.RequestType {
			t.Fatal("parse is not deterministic")
		}
	})
}
