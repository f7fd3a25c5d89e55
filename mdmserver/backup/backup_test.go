package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/backup"
)

// bytesDB is a database whose snapshot is a fixed byte string.
type bytesDB []byte

func (b bytesDB) Snapshot(_ context.Context, fn func(int64, func(io.Writer) (int64, error)) error) error {
	return fn(int64(len(b)), func(w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	})
}

// recorder is an audit log that keeps what it is given.
type recorder struct{ entries []audit.Entry }

func (r *recorder) Append(_ context.Context, e audit.Entry) (int64, error) {
	r.entries = append(r.entries, e)
	return int64(len(r.entries) - 1), nil
}

func (r *recorder) Checkpoint(context.Context) ([]byte, error) {
	return []byte("hale-audit\n1\nhash\n\n— sig\n"), nil
}

// dataDir makes a data directory like a server's.
func dataDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"master.key":              "the master key",
		"admin.token":             "bootstrap token",
		"hale.db":                 "live database (the snapshot is what counts)",
		"audit.pub":               "hale-audit+1234+key\n",
		"audit.key.sealed":        "sealed audit key",
		"ca/root.pem":             "root cert",
		"ca/root.key.sealed":      "sealed root key",
		"ca/intermediate.pem.tmp": "half-written",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func service(dir string) (*backup.Service, *recorder) {
	rec := &recorder{}
	return &backup.Service{DB: bytesDB("snapshot bytes"), Dir: dir, Exclude: []string{"master.key", "admin.token"},
		Audit: rec, Version: "test", Now: func() time.Time { return time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC) }}, rec
}

func TestRoundTrip(t *testing.T) {
	src := dataDir(t)
	svc, rec := service(src)
	var buf bytes.Buffer
	m, err := svc.Write(context.Background(), &buf, audit.Entry{Actor: "token:ops"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.entries) != 1 || rec.entries[0].Action != "backup.create" || rec.entries[0].Actor != "token:ops" {
		t.Fatalf("audit entries = %+v, want one backup.create by token:ops", rec.entries)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	if got, want := strings.Join(names, " "), "hale.db audit.key.sealed audit.pub ca/root.key.sealed ca/root.pem"; got != want {
		t.Fatalf("archived %q, want %q (no master key, no bootstrap token, no .tmp)", got, want)
	}
	if checked, err := backup.Check(bytes.NewReader(buf.Bytes())); err != nil || checked.Checkpoint != m.Checkpoint {
		t.Fatalf("Check = %+v, %v", checked, err)
	}
	dst := t.TempDir()
	if _, err := backup.Extract(bytes.NewReader(buf.Bytes()), dst, 0); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "hale.db")); err != nil || string(b) != "snapshot bytes" {
		t.Fatalf("restored hale.db = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "ca", "root.key.sealed")); err != nil || string(b) != "sealed root key" {
		t.Fatalf("restored ca/root.key.sealed = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "master.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the master key was restored: %v", err)
	}
	// Extract refuses a directory that holds anything.
	if _, err := backup.Extract(bytes.NewReader(buf.Bytes()), dst, 0); err == nil {
		t.Fatal("Extract into a non-empty directory succeeded")
	}
}

func TestRefusesSymlinkInDataDir(t *testing.T) {
	src := dataDir(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "ca", "link.pem")); err != nil {
		t.Fatal(err)
	}
	svc, rec := service(src)
	if _, err := svc.Write(context.Background(), io.Discard, audit.Entry{Actor: "a"}); err == nil {
		t.Fatal("a backup of a data directory with a symbolic link succeeded")
	}
	if len(rec.entries) != 0 {
		t.Fatal("a refused backup was recorded as taken")
	}
}

// archive builds a gzip'd tar by hand, for the refusals.
func archive(t testing.TB, entries ...*tar.Header) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := h.Linkname // the test puts the body here
		if h.Typeflag == tar.TypeReg {
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, body)
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestRefusesBadArchives(t *testing.T) {
	var good bytes.Buffer
	svc, _ := service(dataDir(t))
	if _, err := svc.Write(context.Background(), &good, audit.Entry{Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)/2] ^= 0xff
	reg := func(name, body string) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Linkname: body, Mode: 0o600}
	}
	manifest := fmt.Sprintf(`{"format":1,"created_at":"2026-12-03T00:00:00Z","server_version":"x","audit_checkpoint":"cp","files":[{"name":"hale.db","size":2,"sha256":"%s"}]}`, sha256hex("db"))
	for name, data := range map[string][]byte{
		"not gzip":               []byte("hello"),
		"cut off":                good.Bytes()[:good.Len()*2/3],
		"a byte changed":         flipped,
		"empty":                  archive(t),
		"parent escape":          archive(t, reg("../evil", "x"), reg(backup.ManifestName, manifest)),
		"absolute":               archive(t, reg("/etc/evil", "x")),
		"three levels":           archive(t, reg("a/b/c", "x")),
		"symlink":                archive(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "hale.db", Linkname: "/etc/passwd"}),
		"duplicate":              archive(t, reg("hale.db", "db"), reg("hale.db", "db"), reg(backup.ManifestName, manifest)),
		"after manifest":         archive(t, reg("hale.db", "db"), reg(backup.ManifestName, manifest), reg("extra", "x")),
		"unlisted file":          archive(t, reg("hale.db", "db"), reg("extra", "x"), reg(backup.ManifestName, manifest)),
		"checksum wrong":         archive(t, reg("hale.db", "dB"), reg(backup.ManifestName, manifest)),
		"unknown manifest field": archive(t, reg("hale.db", "db"), reg(backup.ManifestName, strings.Replace(manifest, `"format"`, `"x":1,"format"`, 1))),
		"newer format":           archive(t, reg("hale.db", "db"), reg(backup.ManifestName, strings.Replace(manifest, `"format":1`, `"format":2`, 1))),
		"oversized data file":    archive(t, reg("ca/big.pem", strings.Repeat("x", 1<<20+1))),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := backup.Check(bytes.NewReader(data)); err == nil {
				t.Fatal("Check accepted it")
			}
			dst := t.TempDir()
			if _, err := backup.Extract(bytes.NewReader(data), dst, 0); err == nil {
				t.Fatal("Extract accepted it")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
				t.Fatal("a file was written outside the target")
			}
		})
	}
	// The hand-built manifest is itself valid, so the refusals above are for what they name.
	ok := archive(t, reg("hale.db", "db"), reg(backup.ManifestName, manifest))
	if _, err := backup.Check(bytes.NewReader(ok)); err != nil {
		t.Fatalf("the well-formed hand-built archive was refused: %v", err)
	}
}

func FuzzCheck(f *testing.F) {
	var good bytes.Buffer
	svc, _ := service(dataDir(f))
	if _, err := svc.Write(context.Background(), &good, audit.Entry{Actor: "a"}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := backup.Check(bytes.NewReader(data))
		if err == nil && m.Checkpoint == "" {
			t.Fatal("accepted an archive without a checkpoint")
		}
	})
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
