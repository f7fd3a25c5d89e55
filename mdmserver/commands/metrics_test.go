package commands_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/micromdm/nanomdm/push"
	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// newService returns a commands service on a fresh bbolt store. The store's contract is tested
// in storage/storagetest; here it only keeps the records a push updates.
func newService(t testing.TB) *commands.Service {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return commands.NewService(storage.Scope(storage.Store(st), func(tx storage.Tx) commands.Tx { return tx }))
}

// pusherFunc is a push.Pusher answering with fn.
type pusherFunc func(ids []string) (map[string]*push.Response, error)

func (f pusherFunc) Push(_ context.Context, ids []string) (map[string]*push.Response, error) {
	return f(ids)
}

// Each push counts once, under the class of its outcome.
func TestPushResults(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	r := commands.PushResultLabels
	apnsRefused := fmt.Errorf("push HTTP status: 410: %w", &nanopush.JSONPushError{Reason: "Unregistered"})
	for _, tc := range []struct {
		result string
		push   pusherFunc
	}{
		{r.Sent, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Id: "apns-1"}}, nil
		}},
		{r.NoCert, func([]string) (map[string]*push.Response, error) {
			return nil, fmt.Errorf("retrieving push cert for topic %q: %w", "t", pushcert.ErrNotFound)
		}},
		{r.NoToken, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: pushsvc.ErrIdNotFound}}, nil
		}},
		{r.NoToken, func([]string) (map[string]*push.Response, error) { return map[string]*push.Response{}, nil }},
		{r.Rejected, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: apnsRefused}}, nil
		}},
		{r.Failed, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: context.DeadlineExceeded}}, nil
		}},
	} {
		reg := prometheus.NewRegistry()
		d := commands.NewDispatcher(s, nil, tc.push, commands.WithPushMetrics(reg))
		if err := s.Put(ctx, &commands.Record{UUID: "C", EnrollmentID: "U", State: commands.StateQueued}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Push(ctx, "U", "C"); err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{r.Sent, r.NoCert, r.NoToken, r.Rejected, r.Failed} {
			want := 0.0
			if label == tc.result {
				want = 1
			}
			if got := testutil.ToFloat64(d.Pushes().WithLabelValues(label)); got != want {
				t.Errorf("%s push: %s = %v, want %v", tc.result, label, got, want)
			}
		}
	}
	// Without a pusher at all, there is no push certificate.
	reg := prometheus.NewRegistry()
	d := commands.NewDispatcher(s, nil, nil, commands.WithPushMetrics(reg))
	d.Push(ctx, "U", "C")
	if got := testutil.ToFloat64(d.Pushes().WithLabelValues(r.NoCert)); got != 1 {
		t.Errorf("push without a pusher: no_push_cert = %v", got)
	}
}
