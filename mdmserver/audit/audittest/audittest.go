// Package audittest holds the fixtures of the audit log's tests: one test key pair, a clock,
// numbered entries, and helpers to append, export and check verification errors. The audit
// package's own tests, the storage conformance suite and each backend's tests share them.
package audittest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/halemdm/hale/mdmserver/audit"
)

// keyPair is one key pair for every test: key generation is not under test.
var keyPair = sync.OnceValues(func() ([2]string, error) {
	skey, vkey, err := audit.GenerateKey("hale-audit-test")
	return [2]string{skey, vkey}, err
})

// KeyPair returns the test key pair as strings: the private key, then the public one.
func KeyPair(t testing.TB) (skey, vkey string) {
	t.Helper()
	k, err := keyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k[0], k[1]
}

// Keys returns the signer and verifier of the test key pair.
func Keys(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey := KeyPair(t)
	s, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// Clock ticks one second per call from a fixed start, so entries' times are distinct and
// ordered.
func Clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// NewLog returns the log kept in st, signed with the test key, stamped by a Clock and logging
// nowhere; opts apply after those. It also returns the test verifier.
func NewLog(t testing.TB, st audit.Store, opts ...audit.Option) (*audit.Log, note.Verifier) {
	t.Helper()
	s, v := Keys(t)
	opts = append([]audit.Option{audit.WithClock(Clock()), audit.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	l, err := audit.New(st, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l, v
}

// Entry is the i-th test entry: actors, actions and targets cycle, so filters have something to
// select.
func Entry(i int) audit.Entry {
	actions := []string{"device.lock", "device.wipe", "policy.put", "token.create"}
	return audit.Entry{
		Actor:     fmt.Sprintf("tok_%d", i%3),
		Role:      "security",
		Source:    "192.0.2.7:51234",
		RequestID: fmt.Sprintf("req-%d", i),
		Action:    actions[i%len(actions)],
		Target:    fmt.Sprintf("dev-%d", i%5),
		Outcome:   audit.OutcomeOK,
		Details:   map[string]string{"command_id": fmt.Sprintf("cmd-%d", i)},
	}
}

// AppendN appends Entry(from) to Entry(from+n-1), one unit of work each, and fails t unless
// each gets its number as its index.
func AppendN(t testing.TB, l *audit.Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		idx, err := l.Append(context.Background(), Entry(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != int64(i) {
			t.Fatalf("Append returned index %d, want %d", idx, i)
		}
	}
}

// Export returns the export of the whole log.
func Export(t testing.TB, l *audit.Log) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), &buf, audit.Filter{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WantVerifyError fails t unless err is a *audit.VerifyError of kind about entry index, whose
// message names the entry.
func WantVerifyError(t testing.TB, err error, kind string, index int64) {
	t.Helper()
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("got error %v, want a *VerifyError (%s, entry %d)", err, kind, index)
	}
	if ve.Kind != kind || ve.Index != index {
		t.Fatalf("got %q (kind %q, entry %d), want kind %q, entry %d", err, ve.Kind, ve.Index, kind, index)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("entry %d", index)) {
		t.Fatalf("message %q does not name entry %d", err, index)
	}
}
