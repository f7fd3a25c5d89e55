package android

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/fakeamapi"
)

// verifyPush takes Google's token for the audience and nothing else, and a flood of tokens
// with unknown key IDs fetches Google's keys at most once a minute.
func TestVerifyPush(t *testing.T) {
	google, _ := fakeamapi.NewPusher()
	var fetches atomic.Int32
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		google.ServeHTTP(w, r)
	}))
	defer keys.Close()
	now := time.Now()
	const aud = "https://hale.example/android/pubsub"
	s := &Service{audience: aud, now: func() time.Time { return now },
		keys: keySet{url: keys.URL, client: keys.Client(), now: func() time.Time { return now }}}
	ctx := context.Background()

	good, _ := google.IDToken(fakeamapi.GoogleIssuer, aud, time.Hour)
	if err := s.verifyPush(ctx, good); err != nil {
		t.Fatalf("Google's token: %v", err)
	}
	bare, _ := google.IDToken("accounts.google.com", aud, time.Hour)
	if err := s.verifyPush(ctx, bare); err != nil {
		t.Errorf("issuer without scheme: %v", err)
	}
	s.pushAccount = "other@p.iam.gserviceaccount.com"
	if err := s.verifyPush(ctx, good); err == nil {
		t.Error("a push from another service account was taken")
	}
	s.pushAccount = google.Email
	if err := s.verifyPush(ctx, good); err != nil {
		t.Errorf("the subscription's account: %v", err)
	}
	if fetches.Load() != 1 {
		t.Fatalf("fetches = %d, want 1 (cached)", fetches.Load())
	}
	forger, _ := fakeamapi.NewPusher()
	for range 20 {
		forged, _ := forger.IDToken(fakeamapi.GoogleIssuer, aud, time.Hour)
		if err := s.verifyPush(ctx, forged); err == nil {
			t.Fatal("a token from an unknown key was taken")
		}
	}
	if fetches.Load() != 1 {
		t.Errorf("fetches after a flood of unknown keys within a minute of the last = %d, want 1", fetches.Load())
	}
	now = now.Add(2 * time.Minute)
	forged, _ := forger.IDToken(fakeamapi.GoogleIssuer, aud, time.Hour)
	_ = s.verifyPush(ctx, forged)
	if fetches.Load() != 2 {
		t.Errorf("fetches a minute later = %d, want 2", fetches.Load())
	}
	for name, tok := range map[string]string{"empty": "", "not a JWT": "abc.def", "none alg": "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0."} {
		if err := s.verifyPush(ctx, tok); err == nil {
			t.Errorf("%s taken", name)
		}
	}
	s.audience = ""
	if err := s.verifyPush(ctx, good); err == nil {
		t.Error("taken with no audience configured")
	}
}
