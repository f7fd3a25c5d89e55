package enroll

import "testing"

// The rules over a Repository are tested on every backend by the storage conformance suite
// (mdmserver/storage/storagetest/enroll.go); what needs no storage is tested here.

func TestProfileURL(t *testing.T) {
	if got := ProfileURL("https://mdm.example.org/", "hale_enr_ab"); got != "https://mdm.example.org/enroll/apple/hale_enr_ab" {
		t.Errorf("ProfileURL = %q", got)
	}
}
