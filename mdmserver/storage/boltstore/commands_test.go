package boltstore

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/fakeapns"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/pushcert"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// The values of the command and push certificate buckets as Hale wrote them before the storage
// boundary (commands.Store, agentcmd.Queue, pushcert.Store over bbolt), byte for byte.
var legacyValues = []struct{ bucket, key, value string }{
	{"commands", "U1\x00C1", `{"command_id":"C1","enrollment_id":"U1","request_type":"DeviceLock","state":"pushed","requested_by":"sec","created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z","pushed_at":"2026-03-01T12:00:00Z"}`},
	{"command_results", "U1\x00C1", `{"enrollment_id":"U1","command_id":"C1","request_type":"DeviceLock","status":"Acknowledged","received_at":"2026-03-01T12:00:00Z"}`},
	{"command_pins", "C1", "sealed-pin"},
	{"agent_commands", "d1\x00c_1", `{"id":"c_1","device_id":"d1","type":"wipe","mode":"selective","issued_at":"2026-03-01T12:00:00Z","managed_data":["~/.app"],"state":"queued"}`},
	{"push_certs", "com.apple.mgmt.t", `{"topic":"com.apple.mgmt.t","not_after":"2026-03-01T12:00:00Z","subject":"CN=t","uploaded_at":"2026-03-01T12:00:00Z","cert_pem":"Y2VydA==","sealed_key":"c2VhbGVk","stale_token":"tok"}`},
}

// A data directory written before the storage boundary opens unchanged: its commands are
// counted at open, read back as they were, and written again to the same bytes.
func TestCommandsLegacyValues(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hale.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(btx *bbolt.Tx) error {
		for _, v := range legacyValues {
			if err := btx.Bucket([]byte(v.bucket)).Put([]byte(v.key), []byte(v.value)); err != nil {
				return err
			}
		}
		return btx.Bucket(kvstore.BucketCommandRecords).Put([]byte("U2\x00junk"), []byte("not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := commands.Record{UUID: "C1", EnrollmentID: "U1", RequestType: "DeviceLock", State: commands.StatePushed, RequestedBy: "sec", CreatedAt: t0, UpdatedAt: t0, PushedAt: t0}
	res := commands.Result{EnrollmentID: "U1", CommandUUID: "C1", RequestType: "DeviceLock", Status: "Acknowledged", ReceivedAt: t0}
	cmd := agentcmd.Command{ID: "c_1", DeviceID: "d1", Type: agentcmd.TypeWipe, Mode: "selective", IssuedAt: t0, ManagedData: []string{"~/.app"}, State: agentcmd.StateQueued}
	cert := pushcert.StoredCert{Info: pushcert.Info{Topic: "com.apple.mgmt.t", NotAfter: t0, Subject: "CN=t", UploadedAt: t0},
		CertPEM: []byte("cert"), SealedKey: []byte("sealed"), StaleToken: "tok"}
	// The write transaction the repositories run on, as Store.Update runs them, so the test can
	// read the bytes they wrote in it.
	err = s.db.Update(func(btx *bbolt.Tx) error {
		tx := s.newTx(btx)
		if got, err := tx.Commands().StateCounts(ctx); err != nil || got[commands.StatePushed] != 1 || got[""] != 1 {
			t.Errorf("command counts at open: %v, %v; want pushed 1 and one unreadable", got, err)
		}
		if got, err := tx.AgentCommands().StateCounts(ctx); err != nil || got[agentcmd.StateQueued] != 1 {
			t.Errorf("agent command counts at open: %v, %v", got, err)
		}
		if got, err := tx.Commands().Record(ctx, "U1", "C1"); err != nil || !got.CreatedAt.Equal(t0) || got.RequestedBy != "sec" || got.State != rec.State {
			t.Errorf("legacy record read as %+v, %v", got, err)
		}
		if got, err := tx.Commands().Result(ctx, "U1", "C1"); err != nil || got.Status != res.Status || !got.ReceivedAt.Equal(t0) {
			t.Errorf("legacy result read as %+v, %v", got, err)
		}
		if got, err := tx.Commands().SealedPIN(ctx, "C1"); err != nil || string(got) != "sealed-pin" {
			t.Errorf("legacy PIN read as %q, %v", got, err)
		}
		if got, err := tx.AgentCommands().Command(ctx, "d1", "c_1"); err != nil || got.ManagedData[0] != "~/.app" || got.State != cmd.State {
			t.Errorf("legacy agent command read as %+v, %v", got, err)
		}
		if got, err := tx.PushCerts().Cert(ctx, cert.Topic); err != nil || string(got.SealedKey) != "sealed" || got.StaleToken != "tok" || !got.NotAfter.Equal(t0) {
			t.Errorf("legacy push certificate read as %+v, %v", got, err)
		}
		// Written again, each value is the same bytes.
		for _, err := range []error{
			tx.Commands().PutRecord(ctx, &rec),
			tx.Commands().PutResult(ctx, &res),
			tx.Commands().PutSealedPIN(ctx, "C1", []byte("sealed-pin")),
			tx.AgentCommands().PutCommand(ctx, &cmd),
			tx.PushCerts().PutCert(ctx, &cert),
		} {
			if err != nil {
				return err
			}
		}
		for _, v := range legacyValues {
			if got := btx.Bucket([]byte(v.bucket)).Get([]byte(v.key)); string(got) != v.value {
				t.Errorf("%s %q written as\n%s\nwant\n%s", v.bucket, v.key, got, v.value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The push certificate's private key is not in the file in clear.
func TestPushKeyNotInFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hale.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := seal.New(bytes.Repeat([]byte{1}, seal.KeySize))
	svc := pushcert.NewService(storage.Scope(storage.Store(s), func(tx storage.Tx) pushcert.Tx { return tx }), key)
	certPEM, keyPEM, _ := fakeapns.GeneratePushCert("com.apple.mgmt.External.test", time.Hour)
	if _, err := svc.Upload(ctx, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(kvstore.BucketPushCerts).ForEach(func(_, v []byte) error {
			if bytes.Contains(v, []byte("PRIVATE KEY")) {
				t.Error("push key stored in clear")
			}
			return nil
		})
	})
}
