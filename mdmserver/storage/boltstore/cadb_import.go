package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// caImportedKey marks, in the meta bucket, that a CA database file was copied into the store.
// It is written in the copy's own transaction, so a start that stopped after the copy and
// before the rename does not copy the file again over what the CA has written since.
const caImportedKey = "ca_imported"

// MigratedSuffix is appended to the name of a CA database file once ImportCADB has moved it
// into the store.
const MigratedSuffix = ".migrated"

// ImportCADB moves the certificate authority's database out of its own bbolt file at path
// (DATA/ca/ca.db, where Hale kept it before it moved into this store) into the store's CA
// tables, and then renames the file to path+MigratedSuffix. With no file at path it does
// nothing. The copy is one transaction, compared with the file before the rename. On any error
// the file stays where it was and the caller must not start the CA: one without its database
// would accept revoked certificates again.
func (s *Store) ImportCADB(path string) (imported bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("store: CA database %s: %w", path, err)
	}
	fail := func(err error) (bool, error) {
		return false, fmt.Errorf("store: moving the CA database %s into %s (nothing was removed; fix the cause and start again): %w",
			path, s.Path(), err)
	}
	done, err := s.caImported()
	if err != nil {
		return fail(err)
	}
	if !done {
		if err := s.copyCADB(path); err != nil {
			return fail(err)
		}
	} else {
		s.logger.Warn("the CA database was copied into the store before; renaming the file that remained", "path", path)
	}
	if _, err := os.Stat(path + MigratedSuffix); err == nil {
		return fail(fmt.Errorf("%s exists already: move it away", path+MigratedSuffix))
	}
	if err := os.Rename(path, path+MigratedSuffix); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fail(err)
	}
	s.logger.Info("moved the CA database into the store", "from", path, "renamed_to", path+MigratedSuffix)
	return true, nil
}

// caImported reports whether a CA database file was copied into the store already. CA tables
// that hold entries without that mark belong to a CA that started on this store: a file
// beside them is not theirs, and copying it would mix two databases.
func (s *Store) caImported() (bool, error) {
	var done, hasData bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		done = tx.Bucket([]byte(metaBucket)).Get([]byte(caImportedKey)) != nil
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if k, _ := b.Cursor().First(); k != nil && strings.HasPrefix(string(name), CABucketPrefix) {
				hasData = true
			}
			return nil
		})
	})
	if err == nil && !done && hasData {
		err = errors.New("the store holds a CA database already; the file is not its own")
	}
	return done, err
}

// copyCADB copies every table of the bbolt file at path into the store's CA tables and marks
// the store, in one transaction, then checks the copy against the file.
func (s *Store) copyCADB(path string) error {
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: DefaultOpenTimeout})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer src.Close()
	return src.View(func(stx *bbolt.Tx) error {
		err := s.db.Update(func(dtx *bbolt.Tx) error {
			err := stx.ForEach(func(name []byte, sb *bbolt.Bucket) error {
				db, err := dtx.CreateBucketIfNotExists(append([]byte(CABucketPrefix), name...))
				if err != nil {
					return err
				}
				return copyBucket(db, sb)
			})
			if err != nil {
				return err
			}
			mark := fmt.Sprintf("%s %s", time.Now().UTC().Format(time.RFC3339), path)
			return dtx.Bucket([]byte(metaBucket)).Put([]byte(caImportedKey), []byte(mark))
		})
		if err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		return s.db.View(func(dtx *bbolt.Tx) error {
			return stx.ForEach(func(name []byte, sb *bbolt.Bucket) error {
				if err := sameBucket(sb, dtx.Bucket(append([]byte(CABucketPrefix), name...))); err != nil {
					return fmt.Errorf("check of the copy: table %s: %w", name, err)
				}
				return nil
			})
		})
	})
}

// copyBucket copies every key and nested bucket of src into dst, and its sequence.
func copyBucket(dst, src *bbolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(k, v) // bbolt copies k and v into its own pages
		}
		child, err := dst.CreateBucketIfNotExists(k)
		if err != nil {
			return err
		}
		return copyBucket(child, src.Bucket(k))
	})
}

// sameBucket reports how b differs from a, or nil: the same keys, values and nested buckets.
func sameBucket(a, b *bbolt.Bucket) error {
	if b == nil {
		return errors.New("missing")
	}
	n := 0
	err := a.ForEach(func(k, v []byte) error {
		n++
		if v == nil {
			if err := sameBucket(a.Bucket(k), b.Bucket(k)); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			return nil
		}
		if got := b.Get(k); got == nil || !bytes.Equal(got, v) {
			return fmt.Errorf("key %x differs", k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m := 0
	if err := b.ForEach(func(_, _ []byte) error { m++; return nil }); err != nil {
		return err
	}
	if m != n {
		return fmt.Errorf("%d keys, want %d", m, n)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
