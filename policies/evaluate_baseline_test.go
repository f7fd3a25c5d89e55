package policies

import (
	"encoding/json"
	"testing"
)

// BenchmarkEvaluateDecodeBaseline is BenchmarkEvaluate's baseline: decoding the same postures
// from their JSON. The server never evaluates a posture it has not just decoded (a report
// arrives as JSON; a policy change re-reads every stored posture from bbolt), so decoding is
// what any check costs at least, and Evaluate/decode says what judging a posture adds to it.
func BenchmarkEvaluateDecodeBaseline(b *testing.B) {
	p := mustParseFixture(b, "hipaa-texting.yaml")
	decode := func(b *testing.B, docs [][]byte) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var pos Posture
			if err := json.Unmarshal(docs[i%len(docs)], &pos); err != nil || pos.Platform == "" {
				b.Fatalf("decode: %v", err)
			}
		}
	}
	b.Run("compliant", func(b *testing.B) {
		docs := make([][]byte, len(every))
		for i, pl := range every {
			docs[i] = mustJSON(b, compliantPosture(p, pl, t0))
		}
		decode(b, docs)
	})
	b.Run("noncompliant", func(b *testing.B) {
		// The same posture BenchmarkEvaluate/noncompliant judges.
		pos := compliantPosture(p, PlatformIOS, t0)
		pos.PasscodePresent.Value = false
		pos.OS.Value.Version = "16.0"
		decode(b, [][]byte{mustJSON(b, pos)})
	})
}

func mustJSON(b *testing.B, v any) []byte {
	b.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return j
}
