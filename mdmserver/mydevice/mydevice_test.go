package mydevice

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

type oneDevice struct{}

func (oneDevice) Get(_ context.Context, id string) (*inventory.Device, error) {
	if id == "d1" {
		return &inventory.Device{ID: "d1", Hostname: "ward-7-laptop"}, nil
	}
	return nil, inventory.ErrNotFound
}

func newHandler(t testing.TB, now *time.Time) *Handler {
	key, _ := seal.New(bytes.Repeat([]byte{3}, seal.KeySize))
	x := access.NewIndex()
	x.MarkLoaded()
	x.Put(&access.Decision{DeviceID: "d1", State: "active", ReportedAt: *now, StaleAt: now.Add(time.Hour),
		Verdict: policies.Verdict{Compliant: true}}, *now)
	return &Handler{Key: key, PublicURL: "https://hale.example", Decisions: x, Devices: oneDevice{},
		Now: func() time.Time { return *now }, Log: slog.New(slog.DiscardHandler)}
}

func get(h *Handler, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/my-device/x", nil)
	r.SetPathValue("token", token)
	w := httptest.NewRecorder()
	h.Page(w, r)
	return w
}

func TestLinkExpires(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	h := newHandler(t, &now)
	l := h.LinkFor("d1")
	tok := l.URL[strings.LastIndexByte(l.URL, '/')+1:]
	if w := get(h, tok); w.Code != 200 || !strings.Contains(w.Body.String(), "ward-7-laptop") {
		t.Fatalf("fresh link: %d", w.Code)
	}
	now = now.Add(LinkTTL)
	if w := get(h, tok); w.Code != 404 {
		t.Fatalf("expired link: %d", w.Code)
	}
	// A sealed link for a device that is gone shows nothing either.
	now = now.Add(-LinkTTL)
	l = h.LinkFor("gone")
	if w := get(h, l.URL[strings.LastIndexByte(l.URL, '/')+1:]); w.Code != 404 {
		t.Fatalf("unknown device: %d", w.Code)
	}
}

func FuzzPageToken(f *testing.F) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	h := newHandler(f, &now)
	l := h.LinkFor("d1")
	valid := l.URL[strings.LastIndexByte(l.URL, '/')+1:]
	for _, s := range []string{valid, valid[:10], "", "AAAA", strings.Repeat("A", 700), "%00", "e30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		w := get(h, token)
		// Only a token sealed under the server's key opens the page (the seed's, made when
		// this process set up the fuzz target).
		raw, err := base64.RawURLEncoding.DecodeString(token)
		sealed := err == nil
		if sealed {
			_, err = h.Key.Open(sealPurpose, raw)
			sealed = err == nil
		}
		if w.Code != 404 && !sealed {
			t.Fatalf("token %q answered %d", token, w.Code)
		}
		if strings.Contains(strings.ToLower(w.Body.String()), "<script") {
			t.Fatal("a script in the page")
		}
	})
}
