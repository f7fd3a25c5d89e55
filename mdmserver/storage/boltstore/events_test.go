package boltstore

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// Stream records as the releases before owners, statuses and subjects stored them still read,
// and a stream written now is the JSON those releases wrote, plus the newer members.
func TestEventStreamRecordsOfEarlierReleases(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	const old = `{"id":"ss_oldpoll","delivery":"poll","audience":"messaging","events_requested":["https://schemas.openid.net/secevent/caep/event-type/session-revoked"],"created_at":"2025-01-01T00:00:00Z"}`
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(kvstore.BucketEventStreams).Put([]byte("ss_oldpoll"), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, func(tx storage.Tx) error {
		r := tx.Events()
		rec, err := r.Stream(ctx, "ss_oldpoll")
		if err != nil {
			return err
		}
		if rec.Owner != "" || rec.Delivery != "poll" || rec.Audience != "messaging" || len(rec.EventsRequested) != 1 ||
			rec.Status != "" || rec.Listed || rec.Subjects != 0 || rec.Rev != 0 || !rec.CreatedAt.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("old record reads %+v", rec)
		}
		return r.PutStream(ctx, rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if got := string(tx.Bucket(kvstore.BucketEventStreams).Get([]byte("ss_oldpoll"))); got != old {
			t.Errorf("rewritten record\n%s\nwant\n%s", got, old)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
