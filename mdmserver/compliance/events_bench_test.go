package compliance_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/posture"
)

// BenchmarkReevaluateWithEvents is a policy change that flips half of 10,000 devices between
// allowed and denied while a change hook turns each flip into a session-revoked SET committed
// to the outbox of one poll stream, as the server wires it.
func BenchmarkReevaluateWithEvents(b *testing.B) {
	b.Run("hook=none", func(b *testing.B) { benchReevaluateWithEvents(b, false) })
	b.Run("hook=events", func(b *testing.B) { benchReevaluateWithEvents(b, true) })
}

func benchReevaluateWithEvents(b *testing.B, withEvents bool) {
	const n = 10_000
	e := benchFleet(b, n)
	ctx := context.Background()
	key, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	keys, err := signing.Open(ctx, storage.Scope(e.st, func(tx storage.Tx) signing.Tx { return tx }), key)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := events.New(storage.Scope(e.st, func(tx storage.Tx) events.Tx { return tx }), keys, "https://hale.example", key)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.CreateStream(ctx, events.Caller{ID: "bench-receiver"}, events.Config{Audience: "bench"}); err != nil {
		b.Fatal(err)
	}
	if withEvents {
		e.eng.OnChange(func(ctx context.Context, changes []compliance.Change) {
			evs := make([]events.Event, len(changes))
			for i, c := range changes {
				evs[i] = events.Event{Type: posture.EventSessionRevoked, DeviceID: c.DeviceID, Initiator: "policy"}
			}
			if err := tr.Emit(ctx, evs...); err != nil {
				b.Error(err)
			}
		})
	}
	srcs := []string{strictPolicy, basePolicy}
	i := 0
	for b.Loop() {
		e.clock.Set(t0.Add(time.Duration(i+2) * time.Minute))
		if _, err := e.ps.Put(ctx, "base", []byte(srcs[i%2]), "bench"); err != nil {
			b.Fatal(err)
		}
		if st, err := e.eng.ReevaluateAll(ctx); err != nil || st.Changed != n/2 {
			b.Fatalf("pass = %+v, %v", st, err)
		}
		i++
	}
}
