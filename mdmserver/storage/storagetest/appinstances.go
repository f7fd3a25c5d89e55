package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// testAppInstances is the contract of appinstances.Repository.
func testAppInstances(t *testing.T, open Opener) {
	t.Run("contract", func(t *testing.T) { appInstancesContract(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { appInstancesRollback(t, open) })
	t.Run("survives restart", func(t *testing.T) { appInstancesSurviveRestart(t, open) })
}

var appT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func appInstance(id, device, key string) appinstances.Instance {
	return appinstances.Instance{
		ID: id, Platform: appinstances.IOS, DeviceID: device, KeyID: key, PublicKey: []byte{0x30, 0x59, 1, 2},
		Counter: 3, Environment: "production", Receipt: []byte("receipt"), RegisteredAt: appT0,
		Posture: &appinstances.Posture{
			Attested:    policies.Observe(true, policies.ProvenanceAttested, appT0),
			PasscodeSet: policies.Observe(true, policies.ProvenanceApp, appT0),
			AppVersion:  policies.Observe("3.2.1", policies.ProvenanceApp, appT0),
		},
	}
}

func appInstancesContract(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ins := []appinstances.Instance{appInstance("ai_2", "d1", "k2"), appInstance("ai_1", "d1", "k1"), appInstance("ai_3", "d10", "k3")}
	bd := appinstances.Binding{Hash: "h1", DeviceID: "d1", CreatedAt: appT0, ExpiresAt: appT0.Add(time.Hour), CreatedBy: "token:t1"}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		for i := range ins {
			if err := tx.AppInstances().PutInstance(ctx, &ins[i]); err != nil {
				return err
			}
		}
		return tx.AppInstances().PutBinding(ctx, &bd)
	})
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.AppInstances()
		if got, err := r.Instance(ctx, "ai_2"); err != nil || !sameJSON(got, ins[0]) {
			t.Errorf("Instance = %+v, %v; want %+v", got, err, ins[0])
		}
		if got, err := r.InstanceByKey(ctx, "k3"); err != nil || got.ID != "ai_3" {
			t.Errorf("InstanceByKey(k3) = %+v, %v", got, err)
		}
		if _, err := r.Instance(ctx, "ai_9"); !errors.Is(err, appinstances.ErrNotFound) {
			t.Errorf("unknown instance: %v", err)
		}
		if _, err := r.InstanceByKey(ctx, "k9"); !errors.Is(err, appinstances.ErrNotFound) {
			t.Errorf("unknown key: %v", err)
		}
		got, err := r.DeviceInstances(ctx, "d1")
		if err != nil || len(got) != 2 || got[0].ID != "ai_1" || got[1].ID != "ai_2" {
			t.Errorf("DeviceInstances(d1) = %+v, %v; want ai_1, ai_2 and not d10's", got, err)
		}
		if got, err := r.DeviceInstances(ctx, "d2"); err != nil || len(got) != 0 {
			t.Errorf("DeviceInstances(d2) = %+v, %v", got, err)
		}
		if got, err := r.Binding(ctx, "h1"); err != nil || !sameJSON(got, bd) {
			t.Errorf("Binding = %+v, %v", got, err)
		}
		if _, err := r.Binding(ctx, "h2"); !errors.Is(err, appinstances.ErrNotFound) {
			t.Errorf("unknown binding: %v", err)
		}
		if err := r.PutBinding(ctx, &bd); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutBinding in a View = %v, want ErrReadOnly", err)
		}
		return nil
	})
	// Replacing an instance (a report, a revocation) keeps one entry per device.
	revoked := ins[0]
	revoked.RevokedAt, revoked.RevokedReason, revoked.Counter = appT0.Add(time.Hour), "device wiped", 9
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.AppInstances().PutInstance(ctx, &revoked) })
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		got, err := tx.AppInstances().DeviceInstances(ctx, "d1")
		if err != nil || len(got) != 2 || !got[1].Revoked() || got[1].Counter != 9 {
			t.Errorf("after revoking ai_2: %+v, %v", got, err)
		}
		return nil
	})
}

func appInstancesRollback(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	boom := errors.New("boom")
	in := appInstance("ai_1", "d1", "k1")
	err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.AppInstances().PutInstance(ctx, &in); err != nil {
			return err
		}
		if err := tx.AppInstances().PutBinding(ctx, &appinstances.Binding{Hash: "h1", DeviceID: "d1", UsedBy: "ai_1"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.AppInstances()
		_, e1 := r.Instance(ctx, "ai_1")
		_, e2 := r.InstanceByKey(ctx, "k1")
		_, e3 := r.Binding(ctx, "h1")
		ds, e4 := r.DeviceInstances(ctx, "d1")
		if !errors.Is(e1, appinstances.ErrNotFound) || !errors.Is(e2, appinstances.ErrNotFound) ||
			!errors.Is(e3, appinstances.ErrNotFound) || e4 != nil || len(ds) != 0 {
			t.Errorf("a failed unit of work left %v %v %v %v %v", e1, e2, e3, ds, e4)
		}
		return nil
	})
}

func appInstancesSurviveRestart(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	in := appInstance("ai_1", "d1", "k1")
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.AppInstances().PutInstance(ctx, &in) })
	st = Reopen(t, open, st, dir)
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		if got, err := tx.AppInstances().InstanceByKey(ctx, "k1"); err != nil || !sameJSON(got, in) {
			t.Errorf("after restart: %+v, %v", got, err)
		}
		return nil
	})
}
