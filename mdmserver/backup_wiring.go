package mdmserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/halemdm/hale/internal/buildinfo"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/backup"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
)

// newBackupAPI builds GET /api/v1/backup. The master key and the bootstrap admin token are
// never copied: the first would make the sealed keys in the archive readable to whoever holds
// it, the second is a plaintext secret.
func (s *Server) newBackupAPI() *adminapi.Backup {
	exclude := []string{"master.key", "admin.token"}
	if rel, err := filepath.Rel(s.cfg.DataDir, s.cfg.MasterKeyFile); s.cfg.MasterKeyFile != "" && err == nil {
		exclude = append(exclude, filepath.ToSlash(rel))
	}
	if s.snapshots == nil {
		return &adminapi.Backup{Logger: s.log} // PostgreSQL: its own tools back it up
	}
	return &adminapi.Backup{Logger: s.log, Service: &backup.Service{
		DB: s.snapshots, Dir: s.cfg.DataDir, Exclude: exclude, Audit: s.audit, Version: buildinfo.String()}}
}

// RestoreResult is what Restore found in the archive and the restored data directory.
type RestoreResult struct {
	Manifest backup.Manifest
	// Checkpoint is the manifest's audit checkpoint, verified against the restored log.
	Checkpoint audit.Checkpoint
	// AuditEntries is the number of entries in the restored log (at least Checkpoint.N: the
	// entries appended between the checkpoint and the snapshot are in it too).
	AuditEntries int64
	// PinnedKey says whether the log was verified with a key given to Restore rather than the
	// one in the archive.
	PinnedKey bool
}

// Restore makes dataDir, which must not exist, from the backup archive read from r (mdmserver
// restore). It extracts into a temporary directory beside dataDir, verifies every file against
// the manifest, then checks the restored audit log: every entry and stored checkpoint, and the
// checkpoint signed just before the snapshot, against auditKey (an audit.pub an auditor kept)
// or, when auditKey is empty, the audit.pub in the archive. Only then is the directory renamed
// into place. The master key is not in the archive; the restored server needs the original.
func Restore(ctx context.Context, r io.Reader, dataDir, auditKey string) (RestoreResult, error) {
	var res RestoreResult
	dataDir = filepath.Clean(dataDir)
	if _, err := os.Lstat(dataDir); err == nil {
		return res, fmt.Errorf("restore: %s exists; restore into a new directory, never over one", dataDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("restore: %w", err)
	}
	parent := filepath.Dir(dataDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dataDir)+".restore-*")
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename, nothing is left there
	if res.Manifest, err = backup.Extract(r, tmp, 0); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if auditKey == "" {
		b, err := os.ReadFile(filepath.Join(tmp, "audit.pub"))
		if err != nil {
			return res, fmt.Errorf("restore: the archive's audit key: %w", err)
		}
		auditKey = string(b)
	} else {
		res.PinnedKey = true
	}
	if err := verifyRestoredAudit(ctx, filepath.Join(tmp, backup.DatabaseName), auditKey, &res); err != nil {
		return res, fmt.Errorf("restore: the restored audit log does not verify, so nothing was restored: %w", err)
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	d, err := os.Open(parent)
	if err != nil {
		return res, err
	}
	defer d.Close()
	return res, d.Sync()
}

// verifyRestoredAudit checks the audit log in the restored database with the verifier key.
func verifyRestoredAudit(ctx context.Context, dbPath, verifierKey string, res *RestoreResult) error {
	st, err := boltstore.Open(dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	l, err := openVerifiedAudit(ctx, st, verifierKey)
	if err != nil {
		return err
	}
	if res.Checkpoint, err = l.VerifyCheckpoint(ctx, []byte(res.Manifest.Checkpoint)); err != nil {
		return fmt.Errorf("the manifest's checkpoint: %w", err)
	}
	res.AuditEntries, err = l.Size(ctx)
	return err
}

// openVerifiedAudit opens the audit log kept in st with the verifier key (an audit.pub) and
// verifies every stored entry and checkpoint: what restore and migrate check before they trust a
// log they moved.
func openVerifiedAudit(ctx context.Context, st storage.Store, verifierKey string) (*audit.Log, error) {
	v, err := audit.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, err
	}
	l, err := audit.Open(auditStore(st), v)
	if err != nil {
		return nil, err
	}
	if err := l.VerifyStored(ctx); err != nil {
		return nil, err
	}
	return l, nil
}
