package posture_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
)

func TestClientAllowDeny(t *testing.T) {
	h := newFakeHale(t, nil)
	h.set(allow("d1"))
	h.set(deny("d2", "passcode_missing"))
	cl := newClient(t, h, newClock())
	ctx := context.Background()

	d, err := cl.Device(ctx, "d1")
	if err != nil || !d.Allow || d.DeviceID != "d1" || !d.EvaluatedAt.Equal(t0) {
		t.Fatalf("d1: %+v, %v", d, err)
	}
	d, err = cl.Device(ctx, "d2")
	if err != nil || d.Allow || reasonCodes(d) != "passcode_missing" {
		t.Fatalf("d2: %+v, %v", d, err)
	}
	d, err = cl.Device(ctx, "nope")
	if err != nil || d.Allow || reasonCodes(d) != posture.ReasonUnknownDevice {
		t.Fatalf("unknown: %+v, %v", d, err)
	}
	// A device ID that needs escaping reaches the server as one path segment.
	d, err = cl.Device(ctx, "a/b c")
	if err != nil || d.DeviceID != "a/b c" {
		t.Fatalf("escaped ID: %+v, %v", d, err)
	}
	if d, err := cl.Device(ctx, ""); err == nil || d.Allow || reasonCodes(d) != posture.ReasonInvalidDeviceID {
		t.Fatalf("empty ID: %+v, %v", d, err)
	}
}

func TestClientCacheAndInvalidate(t *testing.T) {
	h := newFakeHale(t, nil)
	inGrace := allow("d1")
	inGrace.InGrace, inGrace.Reasons = true, []posture.Reason{{Code: "os_too_old"}}
	h.set(inGrace)
	c := newClock()
	cl := newClient(t, h, c)
	ctx := context.Background()
	ask := func(wantHits int64) posture.Decision {
		t.Helper()
		d, err := cl.Device(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if got := h.hits.Load(); got != wantHits {
			t.Fatalf("server saw %d requests, want %d", got, wantHits)
		}
		return d
	}
	ask(1)
	d := ask(1) // cached
	d.Reasons[0].Code = "mutated"
	if d := ask(1); reasonCodes(d) != "os_too_old" {
		t.Fatal("a caller's change to a decision leaked into the cache")
	}

	h.set(deny("d1", posture.ReasonLocked))
	cl.Invalidate("d1")
	if d := ask(2); d.Allow || reasonCodes(d) != posture.ReasonLocked {
		t.Fatalf("after Invalidate: %+v", d)
	}
	ask(2)
	c.Advance(posture.DefaultCacheTTL)
	ask(3) // expired

	uncached := newClient(t, h, c, posture.WithCacheTTL(0))
	for range 2 {
		if _, err := uncached.Device(ctx, "d1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.hits.Load(); got != 5 {
		t.Fatalf("with the cache off the server saw %d requests, want 5", got)
	}
}

// An answer that was on its way when the event arrived is delivered but not cached.
func TestClientInvalidateDuringRequest(t *testing.T) {
	h := newFakeHale(t, nil)
	h.set(allow("d1"))
	h.arrived, h.release = make(chan struct{}), make(chan struct{})
	cl := newClient(t, h, newClock())
	done := make(chan posture.Decision)
	go func() {
		d, _ := cl.Device(context.Background(), "d1")
		done <- d
	}()
	<-h.arrived
	cl.Invalidate("d1")
	close(h.release)
	if d := <-done; !d.Allow {
		t.Fatalf("the answer in flight: %+v", d)
	}
	h.set(deny("d1", posture.ReasonLost))
	go func() { <-h.arrived }()
	if d, err := cl.Device(context.Background(), "d1"); err != nil || d.Allow || h.hits.Load() != 2 {
		t.Fatalf("the answer from before the event was cached: %+v, %v, %d requests", d, err, h.hits.Load())
	}
}

func TestClientConcurrentAskersShareOneAnswer(t *testing.T) {
	h := newFakeHale(t, nil)
	h.set(allow("d1"))
	cl := newClient(t, h, newClock())
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if d, err := cl.Device(context.Background(), "d1"); err != nil || !d.Allow {
				t.Errorf("%+v, %v", d, err)
			}
			cl.Invalidate("d2")
		})
	}
	wg.Wait()
	if n := h.hits.Load(); n > 20 {
		t.Fatalf("%d requests for 20 askers", n)
	}
}

func TestClientFailsClosed(t *testing.T) {
	cases := []struct {
		mode, token, reason, errHas string
	}{
		{"500", accessToken, posture.ReasonInternalError, "500: boom"},
		{"503", accessToken, posture.ReasonUnreachable, "503"},
		{"garbage", accessToken, posture.ReasonInternalError, "decoding"},
		{"hang", accessToken, posture.ReasonUnreachable, "deadline"},
		{"wrong-id", accessToken, posture.ReasonInternalError, "someone-else"},
		{"", "wrong-token", posture.ReasonInternalError, "401: missing or invalid bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.mode+tc.token, func(t *testing.T) {
			h := newFakeHale(t, nil)
			h.set(allow("d1"))
			h.setMode(tc.mode)
			cl := newClient(t, h, newClock(), posture.WithBearerToken(tc.token))
			for i := range 2 { // never cached: both reach the server
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				d, err := cl.Device(ctx, "d1")
				cancel()
				if err == nil || d.Allow || d.DeviceID != "d1" || reasonCodes(d) != tc.reason {
					t.Fatalf("got %+v, %v; want a %s deny and an error", d, err, tc.reason)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %q does not say %q", err, tc.errHas)
				}
				if posture.ReasonCode(err) != tc.reason {
					t.Fatalf("ReasonCode(%v) = %s", err, posture.ReasonCode(err))
				}
				if got := h.hits.Load(); got != int64(i+1) {
					t.Fatalf("server saw %d requests after %d asks: a failure was cached", got, i+1)
				}
			}
		})
	}

	t.Run("server down", func(t *testing.T) {
		h := newFakeHale(t, nil)
		cl := newClient(t, h, newClock())
		h.srv.Close()
		d, err := cl.Device(context.Background(), "d1")
		if err == nil || d.Allow || reasonCodes(d) != posture.ReasonUnreachable {
			t.Fatalf("got %+v, %v", d, err)
		}
	})
	t.Run("untrusted server certificate", func(t *testing.T) {
		h := newFakeHale(t, nil)
		h.set(allow("d1"))
		cl, err := posture.NewClient(h.srv.URL, posture.WithBearerToken(accessToken))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := cl.Device(context.Background(), "d1"); err == nil || d.Allow {
			t.Fatalf("a server with an untrusted certificate was believed: %+v", d)
		}
		if h.hits.Load() != 0 {
			t.Fatal("the request reached the handler")
		}
	})
}

func TestClientCheck(t *testing.T) {
	h := newFakeHale(t, nil)
	h.set(allow("d1"))
	h.set(deny("d2", posture.ReasonWiped))
	cert := deviceCert(t, "d1")
	h.setCert(cert, "d1")
	cl := newClient(t, h, newClock())
	ctx := context.Background()

	d, err := cl.Check(ctx, posture.CertificateSubject(cert))
	if err != nil || !d.Allow || d.DeviceID != "d1" {
		t.Fatalf("by certificate: %+v, %v", d, err)
	}
	if _, err := cl.Check(ctx, posture.CertificateSubject(cert)); err != nil || h.hits.Load() != 1 {
		t.Fatalf("certificate lookup not cached: %d requests, %v", h.hits.Load(), err)
	}
	cl.Invalidate("d1")
	if _, err := cl.Check(ctx, posture.CertificateSubject(cert)); err != nil || h.hits.Load() != 2 {
		t.Fatalf("Invalidate did not drop the certificate lookup: %d requests, %v", h.hits.Load(), err)
	}
	if d, err := cl.Check(ctx, posture.CertificateSubject(deviceCert(t, "stranger"))); err != nil || d.Allow ||
		reasonCodes(d) != posture.ReasonUnknownCert {
		t.Fatalf("unknown certificate: %+v, %v", d, err)
	}
	if d, err := cl.Check(ctx, posture.Subject{DeviceID: "d1", Token: "x"}); err == nil || d.Allow {
		t.Fatalf("a subject naming two things was sent: %+v", d)
	}

	ds, err := cl.CheckBatch(ctx, []posture.Subject{{DeviceID: "d1"}, {DeviceID: "d2"}, posture.CertificateSubject(cert)})
	if err != nil || len(ds) != 3 || !ds[0].Allow || ds[1].Allow || reasonCodes(ds[1]) != posture.ReasonWiped || ds[2].DeviceID != "d1" {
		t.Fatalf("batch: %+v, %v", ds, err)
	}
	before := h.hits.Load()
	ds, err = cl.CheckBatch(ctx, make([]posture.Subject, posture.MaxCheckBatch+1))
	if err == nil || len(ds) != posture.MaxCheckBatch+1 || ds[0].Allow || h.hits.Load() != before {
		t.Fatalf("oversized batch: %d decisions, %v, %d requests", len(ds), err, h.hits.Load()-before)
	}
	h.setMode("503")
	ds, err = cl.CheckBatch(ctx, []posture.Subject{{DeviceID: "d1"}, {DeviceID: "d2"}})
	if err == nil || len(ds) != 2 || ds[0].Allow || reasonCodes(ds[0]) != posture.ReasonUnreachable || ds[0].DeviceID != "d1" {
		t.Fatalf("failed batch: %+v, %v", ds, err)
	}
}

func TestNewClientRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		url  string
		opts []posture.ClientOption
	}{
		"plain http":     {"http://hale.test", nil},
		"no host":        {"https://", nil},
		"bad PEM":        {"https://hale.test", []posture.ClientOption{posture.WithRootCAsPEM([]byte("nope"))}},
		"client and CAs": {"https://hale.test", []posture.ClientOption{posture.WithHTTPClient(nil), posture.WithRootCAsPEM(nil)}},
	} {
		if _, err := posture.NewClient(tc.url, tc.opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var ae *posture.APIError
	if errors.As(errors.New("x"), &ae) {
		t.Fatal("unreachable")
	}
}
