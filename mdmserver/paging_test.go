package mdmserver_test

import (
	"net/http"
	"testing"
)

// Paging parameters that are not whole numbers in range are refused with a problem, not taken
// as the default: hostile or broken clients learn it at once. (The contract check also fails a
// 200 to a request the document calls invalid.)
func TestPagingParametersValidated(t *testing.T) {
	env := newTestEnv(t)
	auditor := env.token("auditor")
	for _, path := range []string{
		"/api/v1/devices?limit=abc", "/api/v1/devices?limit=0", "/api/v1/devices?limit=-5",
		"/api/v1/devices?limit=99999999999999999999",
		"/api/v1/audit?limit=x", "/api/v1/audit?start=-1", "/api/v1/audit?start=1e3",
	} {
		if code := env.call("GET", path, auditor, nil, nil); code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, code)
		}
	}
	for _, path := range []string{"/api/v1/devices?limit=10", "/api/v1/audit?start=0&limit=5", "/api/v1/devices?limit=100000000"} {
		if code := env.call("GET", path, auditor, nil, nil); code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, code)
		}
	}
}
