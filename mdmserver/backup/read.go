package backup

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Bounds on what an archive may hold: a hostile or corrupt archive must not fill the disk or
// memory before it is found out.
const (
	maxEntries      = 64      // the database, about a dozen data files and the manifest
	maxFileSize     = 1 << 20 // every file but the database: certificates and sealed keys
	maxManifestSize = 1 << 20
	// DefaultMaxDatabaseSize bounds the database file a restore accepts.
	DefaultMaxDatabaseSize = 1 << 40
)

// Check reads a whole archive and verifies it (names, sizes, checksums, the manifest last),
// writing nothing. mdmctl uses it on the archive it just received: a cut-off download has no
// manifest.
func Check(r io.Reader) (Manifest, error) {
	return read(r, DefaultMaxDatabaseSize, func(string, fs.FileMode) (io.WriteCloser, error) { return discard{}, nil })
}

// Extract reads an archive into dir, which must exist and be empty, and verifies it as Check
// does. Files are synced before it returns. On error dir holds a partial copy, which the caller
// removes. maxDB bounds the database's size (DefaultMaxDatabaseSize when <= 0).
func Extract(r io.Reader, dir string, maxDB int64) (Manifest, error) {
	if maxDB <= 0 {
		maxDB = DefaultMaxDatabaseSize
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	if len(entries) > 0 {
		return Manifest{}, fmt.Errorf("backup: extract: %s is not empty", dir)
	}
	dirs := map[string]bool{".": true}
	m, err := read(r, maxDB, func(name string, mode fs.FileMode) (io.WriteCloser, error) {
		parent := path.Dir(name)
		if !dirs[parent] {
			if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(parent)), 0o700); err != nil {
				return nil, err
			}
			dirs[parent] = true
		}
		f, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return nil, err
		}
		return syncCloser{f}, nil
	})
	if err != nil {
		return m, err
	}
	for d := range dirs {
		if err := syncDir(filepath.Join(dir, filepath.FromSlash(d))); err != nil {
			return m, err
		}
	}
	return m, nil
}

// read walks the archive, handing each file's bytes to a writer from create, and checks them
// against the manifest at the end.
func read(r io.Reader, maxDB int64, create func(name string, mode fs.FileMode) (io.WriteCloser, error)) (Manifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	tr := tar.NewReader(gz)
	var (
		seen     []File
		manifest *Manifest
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if manifest != nil {
			return Manifest{}, fmt.Errorf("%w: %q follows the manifest", ErrInvalid, hdr.Name)
		}
		if len(seen) >= maxEntries {
			return Manifest{}, fmt.Errorf("%w: more than %d entries", ErrInvalid, maxEntries)
		}
		if hdr.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("%w: %q is not a regular file", ErrInvalid, hdr.Name)
		}
		if err := checkName(hdr.Name); err != nil {
			return Manifest{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if hdr.Name == ManifestName {
			m, err := readManifest(tr, hdr.Size)
			if err != nil {
				return Manifest{}, err
			}
			manifest = &m
			continue
		}
		limit := int64(maxFileSize)
		if hdr.Name == DatabaseName {
			limit = maxDB
		}
		if hdr.Size < 0 || hdr.Size > limit {
			return Manifest{}, fmt.Errorf("%w: %q is %d bytes; at most %d allowed", ErrInvalid, hdr.Name, hdr.Size, limit)
		}
		for _, f := range seen {
			if f.Name == hdr.Name {
				return Manifest{}, fmt.Errorf("%w: %q appears twice", ErrInvalid, hdr.Name)
			}
		}
		f, err := copyEntry(tr, hdr, create)
		if err != nil {
			return Manifest{}, err
		}
		seen = append(seen, f)
	}
	if manifest == nil {
		return Manifest{}, fmt.Errorf("%w: no manifest: the archive is cut off or was not written by Hale", ErrInvalid)
	}
	if err := manifest.matches(seen); err != nil {
		return Manifest{}, err
	}
	return *manifest, nil
}

// copyEntry copies one entry to a writer from create and returns what it held.
func copyEntry(tr *tar.Reader, hdr *tar.Header, create func(string, fs.FileMode) (io.WriteCloser, error)) (File, error) {
	w, err := create(hdr.Name, fs.FileMode(hdr.Mode).Perm()&0o644|0o600)
	if err != nil {
		return File{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), tr)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, fmt.Errorf("backup: %s: %w", hdr.Name, err)
	}
	return File{Name: hdr.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// readManifest decodes the manifest entry.
func readManifest(r io.Reader, size int64) (Manifest, error) {
	if size < 0 || size > maxManifestSize {
		return Manifest{}, fmt.Errorf("%w: the manifest is %d bytes; at most %d allowed", ErrInvalid, size, maxManifestSize)
	}
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(r, size))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: the manifest: %v", ErrInvalid, err)
	}
	if m.Format != Format {
		return Manifest{}, fmt.Errorf("%w: format %d; this version reads format %d", ErrInvalid, m.Format, Format)
	}
	if m.Checkpoint == "" {
		return Manifest{}, fmt.Errorf("%w: the manifest has no audit checkpoint", ErrInvalid)
	}
	return m, nil
}

// matches checks that the manifest lists exactly the entries read, with their sizes and
// checksums, and that the database is among them.
func (m *Manifest) matches(seen []File) error {
	if len(m.Files) != len(seen) {
		return fmt.Errorf("%w: the manifest lists %d files, the archive holds %d", ErrInvalid, len(m.Files), len(seen))
	}
	db := false
	for i, f := range seen {
		if m.Files[i] != f {
			return fmt.Errorf("%w: %s does not match the manifest (size %d, sha256 %s; manifest: %s, size %d, sha256 %s)",
				ErrInvalid, f.Name, f.Size, f.SHA256, m.Files[i].Name, m.Files[i].Size, m.Files[i].SHA256)
		}
		db = db || f.Name == DatabaseName
	}
	if !db {
		return fmt.Errorf("%w: no %s", ErrInvalid, DatabaseName)
	}
	return nil
}

// checkName accepts the names a data directory holds: one or two slash-separated parts of
// letters, digits, '.', '_' and '-', not starting with '.'. Nothing else can escape the
// directory it is extracted into.
func checkName(name string) error {
	parts := strings.Split(name, "/")
	if len(name) > 128 || len(parts) > 2 {
		return fmt.Errorf("%q is not a data directory name", name)
	}
	for _, p := range parts {
		if p == "" || p[0] == '.' {
			return fmt.Errorf("%q is not a data directory name", name)
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("%q is not a data directory name", name)
			}
		}
	}
	return nil
}

// syncCloser syncs a file before closing it: a restore is done only once its bytes are on disk.
type syncCloser struct{ *os.File }

func (s syncCloser) Close() error {
	if err := s.Sync(); err != nil {
		s.File.Close()
		return err
	}
	return s.File.Close()
}

// syncDir syncs a directory, so the names of the files created in it are on disk too.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }
