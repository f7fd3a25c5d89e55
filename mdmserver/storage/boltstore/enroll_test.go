package boltstore

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

func enrollService(s *Store, opts ...enroll.Option) *enroll.Service {
	return enroll.New(storage.Scope(s, func(tx storage.Tx) enroll.Tx { return tx }), opts...)
}

// No bucket of the file holds the token, as key or value: only its hash is kept.
func TestEnrollTokenStoredOnlyAsHash(t *testing.T) {
	s := openTestStore(t)
	_, tok, err := enrollService(s).Create(context.Background(), enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	if err != nil {
		t.Fatal(err)
	}
	secret := tok[len("hale_enr_"):]
	s.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if strings.Contains(string(k)+string(v), secret) {
					t.Errorf("bucket %s holds the token", name)
				}
				return nil
			})
		})
	})
}

// Records written by the enroll package before the storage boundary, byte for byte: an Apple
// enrollment redeemed for its profile and bound to its device, with its challenge held; a
// revoked agent enrollment.
var (
	goldenAppleID     = "e_f6620e22eae24a5e"
	goldenAppleToken  = "hale_enr_7c3bb2c4f5e16b70a3b1c23c517914db5b3108642fa30f0d6d1e8aeed248bf7b"
	goldenChallenge   = "hale_scep_9e1c9bf8b6e019fe39f74a9695ea090dbded4bcc50a51fabd4832ee80b52ad17"
	goldenEnrollments = map[string]string{
		"e_36cb560b29650cea": `{"id":"e_36cb560b29650cea","owner":"o","group":"g","platform":"agent","created_at":"2026-03-01T12:00:00Z","expires_at":"2026-03-02T12:00:00Z","revoked_at":"2026-03-01T12:00:00Z","state":"","token_hash":"92d6a6718078bfd2d3fe705151417dd1c2468a27902034d84b773bf1802cc45e"}`,
		goldenAppleID:        `{"id":"e_f6620e22eae24a5e","owner":"dr.grey","group":"icu","platform":"apple","created_at":"2026-03-01T12:00:00Z","created_by":"it (t_1)","expires_at":"2026-03-02T12:00:00Z","used_at":"2026-03-01T12:00:00Z","device_id":"d_1","state":"","token_hash":"928183fb3425ecd5544ee832a3d1d4c9d8d8f39475bf82e5bc2bfa633142c111"}`,
	}
	goldenTokens = map[string]string{
		"928183fb3425ecd5544ee832a3d1d4c9d8d8f39475bf82e5bc2bfa633142c111": goldenAppleID,
		"92d6a6718078bfd2d3fe705151417dd1c2468a27902034d84b773bf1802cc45e": "e_36cb560b29650cea",
	}
	goldenChallengeHash  = "09168ca8d9435429b22ffecfffd1b57ee26c0cb0447c0dcbe3dcf1569412b96d"
	goldenChallengeValue = `{"enrollment_id":"e_f6620e22eae24a5e","created_at":"2026-03-01T12:00:00Z","expires_at":"2026-03-01T13:00:00Z","held_by":"9f1b2577169179fc7fac949a3599e891","held_until":"2026-03-01T12:01:00Z"}`
)

// An existing data directory opens unchanged: what the enroll package stored before the
// storage boundary reads back right, works under the rules, and is written back byte for byte.
func TestEnrollExistingFormat(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rawKey := func(h string) []byte {
		k, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for id, v := range goldenEnrollments {
			if err := tx.Bucket(kvstore.BucketEnrollments).Put([]byte(id), []byte(v)); err != nil {
				return err
			}
		}
		for h, id := range goldenTokens {
			if err := tx.Bucket(kvstore.BucketEnrollmentTokens).Put(rawKey(h), []byte(id)); err != nil {
				return err
			}
		}
		return tx.Bucket(kvstore.BucketEnrollmentChallenges).Put(rawKey(goldenChallengeHash), []byte(goldenChallengeValue))
	})
	if err != nil {
		t.Fatal(err)
	}

	// Written back unchanged, byte for byte.
	err = s.Update(ctx, func(tx storage.Tx) error {
		r := tx.Enrollments()
		for id := range goldenEnrollments {
			rec, err := r.Get(ctx, id)
			if err != nil {
				return err
			}
			if err := r.Put(ctx, rec); err != nil {
				return err
			}
		}
		c, err := r.Challenge(ctx, goldenChallengeHash)
		if err != nil {
			return err
		}
		return r.PutChallenge(ctx, goldenChallengeHash, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.db.View(func(tx *bbolt.Tx) error {
		for id, want := range goldenEnrollments {
			if got := string(tx.Bucket(kvstore.BucketEnrollments).Get([]byte(id))); got != want {
				t.Errorf("enrollment %s rewritten as\n%s\nwant\n%s", id, got, want)
			}
		}
		if got := string(tx.Bucket(kvstore.BucketEnrollmentChallenges).Get(rawKey(goldenChallengeHash))); got != goldenChallengeValue {
			t.Errorf("challenge rewritten as\n%s\nwant\n%s", got, goldenChallengeValue)
		}
		return nil
	})

	// Read back right, and the rules work on it: the token is found by its hash and is used, the
	// challenge is held until 12:01 and can be taken after.
	clk := testclock.New(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	svc := enrollService(s, enroll.WithClock(clk.Now))
	e, err := svc.Get(ctx, goldenAppleID)
	if err != nil || e.Owner != "dr.grey" || e.CreatedBy != "it (t_1)" || e.DeviceID != "d_1" || e.State != enroll.StateUsed ||
		e.Platform != enroll.PlatformApple || !e.UsedAt.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("Get = %+v, %v", e, err)
	}
	if list, err := svc.List(ctx); err != nil || len(list) != 2 {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := svc.Redeem(ctx, goldenAppleToken, enroll.PlatformApple, ""); !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("Redeem of the stored token: %v, want ErrUsed", err)
	}
	if _, err := svc.HoldChallenge(ctx, goldenChallenge); !errors.Is(err, enroll.ErrInUse) {
		t.Errorf("HoldChallenge while held: %v, want ErrInUse", err)
	}
	clk.Advance(30 * time.Second)
	if h, err := svc.HoldChallenge(ctx, goldenChallenge); err != nil || h.Enrollment.ID != goldenAppleID {
		t.Errorf("HoldChallenge after the hold lapsed = %+v, %v", h, err)
	}
}
