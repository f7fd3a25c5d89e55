package fakeapns

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzServeHTTP sends arbitrary paths, headers and bodies to the fake:
// it must never panic and must answer either 200 with an apns-id or an
// APNs JSON error with a reason.
func FuzzServeHTTP(f *testing.F) {
	f.Add("/3/device/abcd", "mdm", "10", "", []byte(`{"mdm":"x"}`))
	f.Add("/3/device/zz", "alert", "x", "5", []byte(`{"aps":{}}`))
	f.Add("/3/device/", "", "", "", []byte(``))
	f.Add("/3/device/abcd", "", "", "", []byte(`{"mdm":1}`))
	s := New()
	defer s.Close()
	f.Fuzz(func(t *testing.T, path, pushType, expiration, priority string, body []byte) {
		s.mu.Lock()
		s.pushes = nil // keep memory flat over a long fuzz run
		s.mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "https://fake/", bytes.NewReader(body))
		req.URL.Path = path
		req.ProtoMajor, req.ProtoMinor, req.Proto = 2, 0, "HTTP/2.0"
		req.Header.Set("authorization", "bearer test")
		req.Header.Set("apns-push-type", pushType)
		req.Header.Set("apns-expiration", expiration)
		req.Header.Set("apns-priority", priority)
		w := httptest.NewRecorder()
		s.serveHTTP(w, req)
		if w.Header().Get("apns-id") == "" {
			t.Fatalf("no apns-id (status %d)", w.Code)
		}
		if w.Code == http.StatusOK {
			return
		}
		var e struct{ Reason string }
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Reason == "" {
			t.Fatalf("status %d without a JSON reason: %q", w.Code, w.Body.String())
		}
	})
}
