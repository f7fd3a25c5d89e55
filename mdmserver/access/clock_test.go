package access

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/policies"
)

// WriteAnswer answers at the index's clock, so a server whose compliance clock moved past a
// grace period (or a report's age) answers as of then, not as of the wall clock.
func TestWriteAnswerUsesTheIndexClock(t *testing.T) {
	clock := testclock.New(t0)
	x := NewIndex(WithClock(clock.Now))
	d := compliantDecision("d")
	d.Verdict = policies.Verdict{Reasons: []policies.Reason{{Code: "passcode_missing"}},
		NoncompliantSince: t0, GraceUntil: t0.Add(10 * time.Minute)}
	x.Put(d, t0)
	x.MarkLoaded()
	answer := func() Answer {
		w := httptest.NewRecorder()
		x.WriteAnswer(w, "d")
		var a Answer
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := answer(); !a.Allow || !a.InGrace {
		t.Fatalf("within grace at the index clock: %+v", a)
	}
	clock.Advance(11 * time.Minute)
	if a := answer(); a.Allow || a.ReasonCodes()[0] != ReasonGraceExpired {
		t.Fatalf("past grace at the index clock: %+v", a)
	}
}
