package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, name := range []string{"hipaa-texting.yaml", "byod.yaml", "kiosk.yaml"} {
		f.Add(mustReadFixture(f, name))
	}
	for _, s := range []string{
		"", "{}", "[]", "null", "~", "passcode:\n  min_length: 500\n", "a: &x 1\nb: *x\n",
		"os:\n  ubuntu: 22.04\n", "grace: 24h", "managed_data:\n  linux: [/, /etc, ..]\n",
		"{\"passcode\": {\"required\": true,,}}", "passcode: {required: true}\n---\nx: 1\n",
		"notifications:\n  apps:\n    - {bundle_id: com.a.b, previews: never}\n    - {bundle_id: com.a.b, previews: never}\n",
		"os: {linux: {\"\": \"1\"}}", "reporting: {max_age: 1m, interval: 30s}", "\ufeff{\"encryption\": {\"required\": true}}",
		"!!binary abc", `{"description": "a\/b"}`, "? [a]\n: 1\n", "passcode: !!str {}\n", "<<: {a: 1}\n",
		dataSharingDoc, "data_sharing: {airdrop: blocked, managed_open_in: false, dictation: \"\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error %v is not a ValidationError with problems", err)
			}
			for _, pr := range ve.Problems {
				if pr.Field == "" && pr.Line <= 0 {
					t.Fatalf("problem names neither field nor line: %+v", pr)
				}
				if pr.Message == "" {
					t.Fatalf("problem without message: %+v", pr)
				}
			}
			if _, err2 := Parse(data); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("second parse disagrees: %v vs %v", err, err2)
			}
			return
		}
		c := p.Canonical()
		p2, err := Parse(data)
		if err != nil || !bytes.Equal(c, p2.Canonical()) {
			t.Fatalf("second parse differs: %v\n%s\n%s", err, c, p2.Canonical())
		}
		p3, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical JSON does not parse: %v\n%s", err, c)
		}
		if !bytes.Equal(c, p3.Canonical()) {
			t.Fatalf("canonical round trip differs:\n%s\n%s", c, p3.Canonical())
		}
		// Whatever parses can be evaluated and rendered without panicking.
		p.Name = "fuzz"
		for _, pl := range every {
			Evaluate(p, &Posture{Platform: pl, ReportedAt: t0}, nil, t0)
			_ = p.ForAgent(pl).ETag()
		}
		_, _ = RenderApple(p, PlatformIOS, RenderOptions{})
	})
}

func FuzzEvaluate(f *testing.F) {
	seedPos, _ := json.Marshal(compliantPosture(&Policy{Name: "hipaa-texting"}, PlatformIOS, t0))
	hipaa := mustReadFixture(f, "hipaa-texting.yaml")
	f.Add(hipaa, seedPos, int64(0), int64(-3600), true)
	f.Add(mustReadFixture(f, "kiosk.yaml"), []byte(`{"platform":"linux","reported_at":"2026-11-25T11:00:00Z","os":{"value":{"version":"x"}}}`), int64(100), int64(10), false)
	f.Add([]byte("{}"), []byte(`{}`), int64(0), int64(0), false)
	f.Add(hipaa, []byte(`{"platform":"windows","reported_at":"2026-11-25T11:59:00Z","restrictions":{"value":{"allowScreenShot":true}},"screen_lock_timeout":{"value":"-5m"}}`), int64(0), int64(1), true)
	fallback, err := Parse(hipaa)
	if err != nil {
		f.Fatal(err)
	}
	fallback.Name = "hipaa-texting"
	f.Fuzz(func(t *testing.T, policyDoc, postureJSON []byte, nowOffset, prevOffset int64, withPrev bool) {
		p, err := Parse(policyDoc)
		if err != nil {
			p = fallback
		} else {
			p.Name = "hipaa-texting"
		}
		var pos Posture
		if json.Unmarshal(postureJSON, &pos) != nil {
			return
		}
		now := t0.Add(time.Duration(nowOffset) * time.Second)
		var prev *Verdict
		if withPrev {
			prev = &Verdict{NoncompliantSince: now.Add(time.Duration(prevOffset) * time.Second)}
		}
		a := Evaluate(p, &pos, prev, now)
		b := Evaluate(p, &pos, prev, now)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("same input, different verdicts:\n%+v\n%+v", a, b)
		}
		if a.Compliant != (len(a.Reasons) == 0) {
			t.Fatalf("compliant %v with reasons %v", a.Compliant, a.Reasons)
		}
		if a.Compliant && (!a.NoncompliantSince.IsZero() || !a.GraceUntil.IsZero()) {
			t.Fatalf("compliant verdict with a noncompliance run: %+v", a)
		}
		if !a.Compliant && (a.NoncompliantSince.IsZero() || a.NoncompliantSince.After(a.EvaluatedAt) || a.GraceUntil.Before(a.NoncompliantSince)) {
			t.Fatalf("bad noncompliance run: %+v", a)
		}
		for _, r := range a.Reasons {
			if r.Code == "" {
				t.Fatalf("empty reason code: %+v", a.Reasons)
			}
		}
	})
}
