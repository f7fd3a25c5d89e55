package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The harness runs end to end at a tiny size and every request gets a correct answer. It checks
// correctness only: no figure here says anything about speed.
func TestRunTiny(t *testing.T) {
	r, err := run(config{Devices: 1000, Conns: 4, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Rounds: 2, Collect: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Phases) != 4 {
		t.Fatalf("%d phases, want 4", len(r.Phases))
	}
	for i, p := range r.Phases {
		if want := []string{"baseline-1", "access-1", "baseline-2", "access-2"}[i]; p.Name != want {
			t.Errorf("phase %d is %s, want %s", i, p.Name, want)
		}
		if p.Requests == 0 || p.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors (first: %s)", p.Name, p.Requests, p.Errors, p.FirstErr)
		}
	}
	if r.Access.Requests != r.Phases[1].Requests+r.Phases[3].Requests {
		t.Errorf("merged access requests %d, phases %d+%d", r.Access.Requests, r.Phases[1].Requests, r.Phases[3].Requests)
	}
	// The mix holds both answers: most allow, the ~5% past grace deny.
	if r.AllowShare < 0.85 || r.AllowShare > 0.99 {
		t.Errorf("allow share %.3f, want about 0.95", r.AllowShare)
	}
	var out bytes.Buffer
	report(&out, r)
	if !strings.Contains(out.String(), "access/baseline: throughput") || !strings.Contains(out.String(), "errors 0 (goal 0: PASS)") {
		t.Errorf("report:\n%s", out.String())
	}
}

// A wrong token is counted as an error on every request, and a device's answer has its ID, so
// the zero above means something.
func TestErrorsAreCounted(t *testing.T) {
	b, err := newBench(config{Devices: 50, Conns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if !json.Valid(b.baseline) {
		t.Errorf("baseline body is not JSON: %s", b.baseline)
	}
	body, _ := b.index.LookupJSON(b.ids[7], time.Now())
	var a struct {
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.DeviceID != b.ids[7] {
		t.Fatalf("answer for %s: %s (%v)", b.ids[7], body, err)
	}

	b.auth = []string{"Bearer hale_0000000000000000_" + strings.Repeat("0", 64)}
	p := b.phase("bad-token", accessPrefix, 100*time.Millisecond)
	if p.Requests == 0 || p.Errors != p.Requests || !strings.Contains(p.FirstErr, "status 401") {
		t.Fatalf("bad token: %d requests, %d errors, first %q", p.Requests, p.Errors, p.FirstErr)
	}
}
