package mdmserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/servertest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/backup"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"go.etcd.io/bbolt"
)

// getBackup fetches GET /api/v1/backup with token and returns the status and the body.
func getBackup(t *testing.T, env *testEnv, token string) (int, []byte) {
	t.Helper()
	var b []byte
	return env.Do("GET", "/api/v1/backup", token, nil, &b), b
}

// TestBackupUnderLoadRestoresEveryAcknowledgedWrite takes a backup while tokens are being
// created, restores it into a new data directory, starts a server there with the original master
// key, and finds every token whose creation was acknowledged before the backup began.
func TestBackupUnderLoadRestoresEveryAcknowledgedWrite(t *testing.T) {
	env := newTestEnv(t)
	if code, _ := getBackup(t, env, env.Token("security")); code != http.StatusForbidden {
		t.Fatalf("a security token's backup: %d, want 403 (admin only)", code)
	}

	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var tok api.Token
			if env.Do("POST", "/api/v1/tokens", env.Admin, map[string]string{"name": fmt.Sprintf("load-%d", i), "role": "auditor"}, &tok) == http.StatusCreated {
				mu.Lock()
				acked = append(acked, tok.Token)
				mu.Unlock()
			}
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged in 10s", n)
		}
	}
	mu.Lock()
	before := slices.Clone(acked)
	mu.Unlock()
	code, archive := getBackup(t, env, env.Admin)
	close(stop)
	<-done
	if code != http.StatusOK {
		t.Fatalf("backup: %d %s", code, archive)
	}
	m, err := backup.Check(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("the archive does not check: %v", err)
	}
	for _, f := range m.Files {
		if f.Name == "master.key" || f.Name == "admin.token" {
			t.Fatalf("the archive holds %s", f.Name)
		}
	}

	restored := filepath.Join(t.TempDir(), "restored")
	pub, err := os.ReadFile(filepath.Join(env.Config.DataDir, "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := mdmserver.Restore(context.Background(), bytes.NewReader(archive), restored, string(pub))
	if err != nil {
		t.Fatal(err)
	}
	if !res.PinnedKey || res.Checkpoint.N == 0 || res.AuditEntries < res.Checkpoint.N {
		t.Fatalf("restore result %+v", res)
	}
	if _, err := mdmserver.Restore(context.Background(), bytes.NewReader(archive), restored, ""); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a restore over an existing directory: %v", err)
	}

	// The operator brings the master key, kept apart from the backups.
	key, err := os.ReadFile(filepath.Join(env.Config.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	env2 := servertest.Start(t, func(c *mdmserver.Config) { c.DataDir = restored })
	for i, tok := range before {
		if code := env2.Do("GET", "/api/v1/audit/checkpoint", tok, nil, nil); code != http.StatusOK {
			t.Fatalf("token %d of %d acknowledged before the backup: %d on the restored server", i, len(before), code)
		}
	}
	var page api.AuditEntries
	env2.Call("GET", "/api/v1/audit?action=backup.create", before[0], nil, http.StatusOK, &page)
	if len(page.Entries) != 1 || page.Entries[0].Role != "admin" {
		t.Fatalf("the restored log's backup entries: %+v, want the one backup by an admin", page.Entries)
	}
}

// TestRestoreRefusesAnotherKey checks a backup's audit log against another server's key: the
// restore is refused and leaves nothing behind.
func TestRestoreRefusesAnotherKey(t *testing.T) {
	env := newTestEnv(t)
	code, archive := getBackup(t, env, env.Admin)
	if code != http.StatusOK {
		t.Fatalf("backup: %d", code)
	}
	other := newTestEnv(t)
	pub, err := os.ReadFile(filepath.Join(other.Config.DataDir, "audit.pub"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := mdmserver.Restore(context.Background(), bytes.NewReader(archive), dir, string(pub)); err == nil {
		t.Fatal("a restore checked against another server's audit key succeeded")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a refused restore left the data directory behind")
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 0 {
		t.Fatalf("a refused restore left %v behind", entries)
	}
}

// signedBefore is an audit log that records nothing and hands out the checkpoint a backup was
// taken with: it repacks a doctored copy as if the server had written it.
type signedBefore string

func (signedBefore) Append(context.Context, audit.Entry) (int64, error) { return 0, nil }
func (s signedBefore) Checkpoint(context.Context) ([]byte, error)       { return []byte(s), nil }

// TestRestoreRefusesAChangedAuditEntry changes one audit entry in a backup's database and
// repacks it with matching checksums (what someone with the archive could do): the restore
// finds the entry no longer matches the signed log and restores nothing.
func TestRestoreRefusesAChangedAuditEntry(t *testing.T) {
	env := newTestEnv(t)
	env.Token("it") // an entry to change
	code, archive := getBackup(t, env, env.Admin)
	if code != http.StatusOK {
		t.Fatalf("backup: %d", code)
	}
	dir := t.TempDir()
	m, err := backup.Extract(bytes.NewReader(archive), dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, backup.DatabaseName))
	if err != nil {
		t.Fatal(err)
	}
	err = st.DB().Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("audit_entries"))
		k := binary.BigEndian.AppendUint64(nil, 0)
		return b.Put(k, bytes.Replace(b.Get(k), []byte(`"role":"admin"`), []byte(`"role":"audit"`), 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	var repacked bytes.Buffer
	svc := &backup.Service{DB: st, Dir: dir, Audit: signedBefore(m.Checkpoint)}
	if _, err := svc.Write(context.Background(), &repacked, audit.Entry{}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	restored := filepath.Join(t.TempDir(), "restored")
	_, err = mdmserver.Restore(context.Background(), &repacked, restored, "")
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("restore of a changed audit entry: %v, want a verification failure", err)
	}
	if _, err := os.Stat(restored); err == nil {
		t.Fatal("a refused restore left the data directory behind")
	}
}
