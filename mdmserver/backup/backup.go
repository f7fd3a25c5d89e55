// Package backup writes and reads Hale's backup archive: a consistent online snapshot of the
// database and the data directory's other files (the CA's certificates and sealed keys, the
// audit log's sealed key and public key), as a gzip-compressed tar with a manifest last.
//
// The master key is never in a backup: the sealed keys in it are useless without it, so the
// archive and the key can be kept apart (two places, two custodians). Nor is the bootstrap admin
// token file, a secret whose use is over once the first tokens exist.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
)

// Format is the archive format version this package writes and reads.
const Format = 1

// DatabaseName is the database file's name in the data directory and in the archive.
const DatabaseName = "hale.db"

// ManifestName is the last entry of every archive.
const ManifestName = "hale-backup.json"

// Manifest describes an archive: what it holds, with checksums, and the audit log's signed
// checkpoint taken just before the snapshot, which the restored log must match.
type Manifest struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	// ServerVersion is the version of the server that wrote the archive.
	ServerVersion string `json:"server_version"`
	// Checkpoint is the audit log's signed checkpoint (a note) taken just before the snapshot:
	// the restored log holds at least its entries, and they hash to it.
	Checkpoint string `json:"audit_checkpoint"`
	// Files are the archive's entries before the manifest, in order.
	Files []File `json:"files"`
}

// File is one archive entry.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Snapshotter copies a database consistently while it is in use; *boltstore.Store is one. fn
// runs inside the snapshot: size is what write will write.
type Snapshotter interface {
	Snapshot(ctx context.Context, fn func(size int64, write func(w io.Writer) (int64, error)) error) error
}

// Auditor is the audit log as the backup needs it: it records the backup, then signs a
// checkpoint that the snapshot will hold.
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
	Checkpoint(ctx context.Context) ([]byte, error)
}

// Service takes backups of a running server.
type Service struct {
	// DB is the database to snapshot.
	DB Snapshotter
	// Dir is the data directory. Every regular file in it is copied, but the database (which
	// DB snapshots) and Exclude.
	Dir string
	// Exclude are the names, relative to Dir, that are never copied: the master key, the
	// bootstrap admin token.
	Exclude []string
	// Audit records each backup before its snapshot, so the archive holds its own record.
	Audit Auditor
	// Version is written to the manifest.
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Write records the backup in the audit log (entry is the actor's template; Action and Target
// are set here), signs a checkpoint, and writes the archive to w. It returns the manifest
// written last. An error after the first byte leaves w with an archive that has no manifest,
// which Check and Extract refuse.
func (s *Service) Write(ctx context.Context, w io.Writer, entry audit.Entry) (Manifest, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	files, err := s.dataFiles()
	if err != nil {
		return Manifest{}, err
	}
	entry.Action, entry.Target = "backup.create", DatabaseName
	if _, err := s.Audit.Append(ctx, entry); err != nil {
		return Manifest{}, fmt.Errorf("backup: recording it: %w", err)
	}
	cp, err := s.Audit.Checkpoint(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: signing a checkpoint: %w", err)
	}
	m := Manifest{Format: Format, CreatedAt: now().UTC(), ServerVersion: s.Version, Checkpoint: string(cp)}

	// The fastest level: the archive is taken while the server works, and a database file
	// compresses well even so.
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	err = s.DB.Snapshot(ctx, func(size int64, write func(io.Writer) (int64, error)) error {
		f, err := addEntry(tw, DatabaseName, size, 0o600, m.CreatedAt, write)
		m.Files = append(m.Files, f)
		return err
	})
	if err != nil {
		return Manifest{}, err
	}
	for _, name := range files {
		f, err := s.addFile(tw, name, m.CreatedAt)
		if err != nil {
			return Manifest{}, err
		}
		m.Files = append(m.Files, f)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	b = append(b, '\n')
	if _, err := addEntry(tw, ManifestName, int64(len(b)), 0o600, m.CreatedAt, func(w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	}); err != nil {
		return Manifest{}, err
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, err
	}
	return m, gz.Close()
}

// dataFiles lists the regular files of the data directory to copy, sorted, as slash-separated
// names relative to it. Anything else (a symbolic link, a device) is refused rather than
// skipped: a backup that silently leaves something out is worse than none.
func (s *Service) dataFiles() ([]string, error) {
	var names []string
	err := filepath.WalkDir(s.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.Dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case rel == ".":
			return nil
		case rel == DatabaseName || rel == DatabaseName+".lock" || slices.Contains(s.Exclude, rel):
			return nil
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("backup: %s is not a regular file", path)
		case filepath.Ext(rel) == ".tmp":
			return nil // an atomic write in progress; the file it replaces is what counts
		}
		if err := checkName(rel); err != nil {
			return fmt.Errorf("backup: %s: %w", path, err)
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: listing %s: %w", s.Dir, err)
	}
	if len(names)+2 > maxEntries {
		return nil, fmt.Errorf("backup: %s holds %d files, more than the %d an archive may", s.Dir, len(names), maxEntries-2)
	}
	return names, nil
}

// addFile copies one file of the data directory into the archive.
func (s *Service) addFile(tw *tar.Writer, name string, at time.Time) (File, error) {
	f, err := os.Open(filepath.Join(s.Dir, filepath.FromSlash(name)))
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return File{}, fmt.Errorf("backup: %w", err)
	}
	if fi.Size() > maxFileSize {
		return File{}, fmt.Errorf("backup: %s is %d bytes, more than the %d a data file may be", name, fi.Size(), maxFileSize)
	}
	return addEntry(tw, name, fi.Size(), fi.Mode().Perm()&0o644, at, func(w io.Writer) (int64, error) {
		return io.CopyN(w, f, fi.Size())
	})
}

// addEntry writes one entry of size bytes, produced by write, and returns its checksum.
func addEntry(tw *tar.Writer, name string, size int64, mode fs.FileMode, at time.Time, write func(io.Writer) (int64, error)) (File, error) {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: int64(mode), ModTime: at, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", name, err)
	}
	h := sha256.New()
	n, err := write(io.MultiWriter(tw, h))
	if err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", name, err)
	}
	if n != size {
		return File{}, fmt.Errorf("backup: %s: wrote %d bytes, want %d", name, n, size)
	}
	return File{Name: name, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ErrInvalid is wrapped by every error about the archive's content (as opposed to I/O).
var ErrInvalid = errors.New("backup: not a valid Hale backup")
