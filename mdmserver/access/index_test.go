package access

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func compliantDecision(id string) *Decision {
	return &Decision{
		DeviceID: id, State: "active",
		Verdict:    policies.Verdict{Compliant: true, EvaluatedAt: t0},
		ReportedAt: t0, StaleAt: t0.Add(15 * time.Minute),
	}
}

func TestAnswerFailsClosed(t *testing.T) {
	x := NewIndex()
	if a := x.Lookup("d1", t0); a.Allow || a.ReasonCodes()[0] != ReasonIndexNotLoaded {
		t.Fatalf("unloaded index answered %+v", a)
	}
	x.MarkLoaded()
	if a := x.Lookup("d1", t0); a.Allow || a.ReasonCodes()[0] != ReasonUnknownDevice {
		t.Fatalf("unknown device answered %+v", a)
	}

	noncompliant := compliantDecision("d")
	noncompliant.Verdict = policies.Verdict{Reasons: []policies.Reason{{Code: "passcode_missing"}},
		NoncompliantSince: t0, GraceUntil: t0.Add(10 * time.Minute)}
	noGrace := compliantDecision("d")
	noGrace.Verdict = policies.Verdict{Reasons: []policies.Reason{{Code: "encryption_off"}}}
	never := compliantDecision("d")
	never.ReportedAt, never.StaleAt = time.Time{}, time.Time{}

	cases := []struct {
		name  string
		d     *Decision
		at    time.Time
		allow bool
		codes string
	}{
		{"compliant fresh", compliantDecision("d"), t0.Add(time.Minute), true, "[]"},
		{"compliant stale", compliantDecision("d"), t0.Add(15 * time.Minute), false, "[report_stale]"},
		{"in grace", noncompliant, t0.Add(5 * time.Minute), true, "[passcode_missing]"},
		{"past grace", noncompliant, t0.Add(11 * time.Minute), false, "[noncompliant_past_grace passcode_missing]"},
		{"no grace", noGrace, t0, false, "[encryption_off]"},
		{"never reported", never, t0, false, "[no_report]"},
	}
	for _, st := range []string{"locked", "lost", "wiped", "wipe_pending", "unenrolled", "retired"} {
		d := compliantDecision("d")
		d.State = st
		cases = append(cases, struct {
			name  string
			d     *Decision
			at    time.Time
			allow bool
			codes string
		}{st, d, t0, false, fmt.Sprint([]string{map[string]string{"locked": ReasonLocked, "lost": ReasonLost, "wiped": ReasonWiped,
			"wipe_pending": ReasonWipePending, "unenrolled": ReasonUnenrolled, "retired": ReasonRetired}[st]})})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x.Put(c.d, t0)
			a := x.Lookup("d", c.at)
			got := fmt.Sprint(a.ReasonCodes())
			if got == "[]" && c.codes == "[]" {
				got = "[]"
			}
			if a.Allow != c.allow || (got != c.codes && !(c.codes == "[]" && len(a.Reasons) == 0)) {
				t.Fatalf("allow=%v reasons=%s, want allow=%v reasons=%s", a.Allow, got, c.allow, c.codes)
			}
			body, allow := x.LookupJSON("d", c.at)
			var fromJSON Answer
			if err := json.Unmarshal(body, &fromJSON); err != nil || allow != a.Allow || fromJSON.Allow != a.Allow {
				t.Fatalf("LookupJSON disagrees: %s (allow=%v)", body, allow)
			}
		})
	}
}

// The cached answer must flip at the deadline without any write.
func TestLookupJSONHonoursDeadlines(t *testing.T) {
	x := NewIndex()
	x.MarkLoaded()
	x.Put(compliantDecision("d"), t0)
	if _, allow := x.LookupJSON("d", t0.Add(14*time.Minute)); !allow {
		t.Fatal("fresh report denied")
	}
	if body, allow := x.LookupJSON("d", t0.Add(15*time.Minute)); allow {
		t.Fatalf("stale report allowed from cache: %s", body)
	}
}

func TestSerialIndex(t *testing.T) {
	x := NewIndex()
	d := compliantDecision("d")
	d.CertSerials, d.CertSHA256 = []string{"aa", "bb"}, []string{"f1", "f2"}
	x.Put(d, t0)
	if x.DeviceForSerial("bb") != "d" || x.DeviceForSHA256("f2") != "d" {
		t.Fatal("serial or fingerprint not indexed")
	}
	d2 := compliantDecision("d")
	d2.CertSerials, d2.CertSHA256 = []string{"cc"}, []string{"f3"}
	x.Put(d2, t0)
	if x.DeviceForSerial("aa") != "" || x.DeviceForSerial("cc") != "d" || x.DeviceForSHA256("f1") != "" || x.DeviceForSHA256("f3") != "d" {
		t.Fatal("replaced certificates not re-indexed")
	}
	x.Delete("d")
	if x.DeviceForSerial("cc") != "" || x.DeviceForSHA256("f3") != "" || x.Len() != 0 {
		t.Fatal("delete left entries")
	}
}

func BenchmarkLookupJSON(b *testing.B) {
	x := NewIndex()
	x.MarkLoaded()
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d_%016x", i)
		x.Put(compliantDecision(ids[i]), t0)
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			x.LookupJSON(ids[i%n], now)
			i++
		}
	})
}

// The cached JSON carries the posture, and matches encoding the Answer directly.
func TestLookupJSONCarriesPosture(t *testing.T) {
	x := NewIndex()
	x.MarkLoaded()
	d := compliantDecision("d")
	d.Posture = &policies.Posture{Platform: policies.PlatformLinux,
		DiskEncrypted: policies.Observe(true, policies.ProvenanceAgent, t0)}
	x.Put(d, t0)
	d2 := *d
	d2.Verdict.EvaluatedAt = t0.Add(time.Second) // same posture pointer: the encoding is reused
	x.Put(&d2, t0)
	body, _ := x.LookupJSON("d", t0.Add(time.Minute))
	want, _ := json.Marshal(x.Lookup("d", t0.Add(time.Minute)))
	var a, b map[string]any
	json.Unmarshal(body, &a)
	json.Unmarshal(want, &b)
	if fmt.Sprint(a) != fmt.Sprint(b) || a["posture"] == nil {
		t.Fatalf("cached answer differs:\n%s\n%s", body, want)
	}
}

// BenchmarkIndexMemory reports the heap one indexed device costs, with a typical agent posture.
func BenchmarkIndexMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		x := NewIndex()
		for i := range n {
			d := compliantDecision(fmt.Sprintf("d_%016x", i))
			d.CertSerials = []string{fmt.Sprintf("%x", 1<<40+i)}
			d.CertSHA256 = []string{fmt.Sprintf("%064x", i)}
			d.Posture = &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: t0,
				OS:                policies.Observe(policies.OSInfo{Version: "24.04", Distribution: "ubuntu", Kernel: "6.8.0-49-generic"}, policies.ProvenanceAgent, t0),
				DiskEncrypted:     policies.Observe(true, policies.ProvenanceAgent, t0),
				SwapEncrypted:     policies.Observe(true, policies.ProvenanceAgent, t0),
				PasscodePresent:   policies.Observe(true, policies.ProvenanceAgent, t0),
				ScreenLockEnabled: policies.Observe(true, policies.ProvenanceAgent, t0),
			}
			x.Put(d, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/device")
		runtime.KeepAlive(x)
	}
}

// The server's Answer and the SDK's posture.Decision are the same JSON: every field the server
// writes is one the SDK reads, and reads back to the same document.
func TestAnswerIsTheSDKDecision(t *testing.T) {
	d := compliantDecision("d")
	d.State = "active"
	d.Verdict = policies.Verdict{Compliant: false, EvaluatedAt: t0, NoncompliantSince: t0, GraceUntil: t0.Add(time.Hour),
		Reasons: []policies.Reason{{Code: policies.CodeEncryptionOff, Detail: "the disk is not encrypted"}}}
	d.Posture = &policies.Posture{Platform: policies.PlatformLinux, ReportedAt: t0,
		DiskEncrypted: policies.Observe(false, policies.ProvenanceAgent, t0)}
	a := d.Answer(t0)
	if !a.InGrace || !a.Allow || len(a.Reasons) == 0 {
		t.Fatalf("fixture is not an in-grace answer with reasons: %+v", a)
	}
	server, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(server))
	dec.DisallowUnknownFields()
	var sdk posture.Decision
	if err := dec.Decode(&sdk); err != nil {
		t.Fatalf("the SDK cannot read an answer: %v", err)
	}
	again, _ := json.Marshal(sdk)
	var x, y any
	json.Unmarshal(server, &x)
	json.Unmarshal(again, &y)
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("round trip through the SDK changed the answer:\n%s\n%s", server, again)
	}
}

// A replica's index answers only while it is fresh: past SetFreshUntil every lookup, cached or
// not, denies with index_stale, and catching up again restores the answers.
func TestIndexStaleDenies(t *testing.T) {
	x := NewIndex()
	x.Put(compliantDecision("d"), t0)
	x.MarkLoaded()
	x.SetFreshUntil(time.Now().Add(time.Minute))
	if a := x.Lookup("d", t0); !a.Allow {
		t.Fatalf("fresh index: %+v", a)
	}
	if _, allow := x.LookupJSON("d", t0); !allow {
		t.Fatal("fresh index, cached answer: deny")
	}
	x.SetFreshUntil(time.Now().Add(-time.Millisecond))
	if a := x.Lookup("d", t0); a.Allow || a.ReasonCodes()[0] != ReasonIndexStale {
		t.Fatalf("stale index answered %+v", a)
	}
	if body, allow := x.LookupJSON("d", t0); allow || !bytes.Contains(body, []byte(ReasonIndexStale)) {
		t.Fatalf("stale index, cached answer: %s", body)
	}
	x.SetFreshUntil(time.Now().Add(time.Minute))
	if a := x.Lookup("d", t0); !a.Allow {
		t.Fatalf("caught up again: %+v", a)
	}
}
