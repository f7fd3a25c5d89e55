package boltstore

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

// TestExport: buckets come out in key order with their sequence, the CA's nested tables with
// their parents first, and the queue per enrollment in order, bodies as stored (sealed), with
// the NotNow answers.
func TestExport(t *testing.T) {
	k, err := seal.New(make([]byte, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	st := openTestStore(t)
	m, err := NewMDMStorage(st, WithCommandSealer(k))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ uuid, ids string }{{"A", "e1"}, {"B", "e2"}, {"C", "e1"}} {
		if _, err := m.EnqueueCommand(ctx, []string{c.ids}, testCommand(t, c.uuid)); err != nil {
			t.Fatal(err)
		}
	}
	if next(t, m, "e1", "A", "NotNow") != "C" {
		t.Fatal("the NotNow command was not skipped")
	}
	ca := st.CADB()
	for _, tbl := range []string{"x509_certs", "x509_certs/data", "revoked"} {
		if err := ca.CreateTable([]byte(tbl)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ca.Set([]byte("x509_certs/data"), []byte("k1"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	b, err := st.Bucket(string(kvstore.BucketAuditMeta))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"b", "a"} {
		if err := b.Set(ctx, key, []byte("v"+key)); err != nil {
			t.Fatal(err)
		}
	}

	var got []string
	err = st.Export(func(ex *Export) error {
		eb, err := ex.Bucket(kvstore.BucketAuditMeta)
		if err != nil {
			return err
		}
		got = append(got, fmt.Sprintf("keys=%d", eb.KeyN()))
		for k, v, err := eb.Next(); k != nil || err != nil; k, v, err = eb.Next() {
			if err != nil {
				return err
			}
			got = append(got, string(k)+"="+string(v))
		}
		if _, err := ex.Bucket([]byte("no_such_bucket")); err == nil {
			t.Error("a missing bucket exported")
		}
		err = ex.CA(func(name []byte) error {
			got = append(got, "table "+string(name))
			return nil
		}, func(tbl, k, v []byte) error {
			got = append(got, string(tbl)+"/"+string(k)+"="+string(v))
			return nil
		})
		if err != nil {
			return err
		}
		return ex.QueuedCommands(func(q QueuedCommand) error {
			plain, err := k.Open("mdm-command/"+q.UUID, q.Stored)
			if err != nil || !slices.Equal(plain, testCommand(t, q.UUID).Raw) {
				t.Errorf("queued %s does not open as stored: %v", q.UUID, err)
			}
			got = append(got, fmt.Sprintf("%s:%s:%s:%v", q.EnrollmentID, q.UUID, q.RequestType, q.NotNow))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"keys=2", "a=va", "b=vb",
		"table revoked", "table x509_certs", "table x509_certs/data", "x509_certs/data/k1=v1",
		"e1:A:ProfileList:true", "e1:C:ProfileList:false", "e2:B:ProfileList:false"}
	if !slices.Equal(got, want) {
		t.Fatalf("exported\n%q\nwant\n%q", got, want)
	}
}
