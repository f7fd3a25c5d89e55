package agent

import (
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

func TestPostureSumIgnoresObservationTimes(t *testing.T) {
	t0 := time.Now()
	mk := func(at time.Time, v bool) *policies.Posture {
		return &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: at,
			DiskEncrypted: policies.Observe(v, policies.ProvenanceAgent, at)}
	}
	if postureSum(mk(t0, true)) != postureSum(mk(t0.Add(time.Hour), true)) {
		t.Fatal("the same facts observed later hash differently")
	}
	if postureSum(mk(t0, true)) == postureSum(mk(t0, false)) {
		t.Fatal("a changed fact hashes the same")
	}
	if postureSum(nil) == postureSum(mk(t0, true)) {
		t.Fatal("nil posture hashes like a real one")
	}
}

func TestBackoffAndIntervals(t *testing.T) {
	a := &Agent{backoffBase: time.Second, backoffMax: time.Minute, minInterval: 15 * time.Second, maxInterval: time.Hour}
	for n := 1; n < 40; n++ {
		d := a.backoff(n)
		if d < 0 || d > time.Minute {
			t.Fatalf("backoff(%d) = %s outside [0, max]", n, d)
		}
	}
	if d := a.backoff(30); d < 30*time.Second {
		t.Fatalf("backoff(30) = %s: not near the cap", d)
	}
	for in, want := range map[string]time.Duration{"1s": 15 * time.Second, "10m": 10 * time.Minute, "48h": time.Hour, "bogus": time.Minute, "": time.Minute, "-5s": time.Minute} {
		if got := a.clampInterval(in, time.Minute); got != want {
			t.Errorf("clampInterval(%q) = %s, want %s", in, got, want)
		}
	}
	for i := 0; i < 100; i++ {
		if d := jitter(time.Minute); d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("jitter(1m) = %s", d)
		}
	}
}

func TestNormalizeServerURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mdm.example.org":         "https://mdm.example.org",
		"https://mdm.example.org:8443/":   "https://mdm.example.org:8443",
		"https://mdm.example.org/hale///": "https://mdm.example.org/hale",
	} {
		got, _, err := normalizeServerURL(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"http://mdm", "mdm.example.org", "https://", "https://u:p@mdm", "https://mdm/?q=1", "%zz"} {
		if _, _, err := normalizeServerURL(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
