// Package state keeps an mdmagent's durable state in one directory: the device key, its
// certificate chain, the pinned server CA, the enrollment identity and the command journal.
//
// Every write is atomic (temporary file, fsync, rename, fsync of the directory), so a crash or
// power loss leaves either the old or the new version of a file, never a torn one. The directory
// is 0700 and every file 0600: the key never leaves the device and nobody but root reads it.
package state

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// File names inside the state directory.
const (
	KeyFile      = "device.key"
	CertFile     = "device.crt"
	CAFile       = "ca.pem"
	IdentityFile = "identity.json"
	SequenceFile = "sequence"
	CommandsDir  = "commands"
)

// maxFile bounds every state file read: they are all small, and a huge one is corruption.
const maxFile = 1 << 20

// ErrNotEnrolled is returned when the state directory holds no enrollment.
var ErrNotEnrolled = errors.New("this device is not enrolled: run `mdmagent enroll --server URL --token T` first")

// DefaultDir is the state directory of the platform's system-wide agent.
func DefaultDir() string {
	switch runtime.GOOS {
	case "darwin":
		return "/Library/Application Support/Hale Agent"
	case "windows":
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return filepath.Join(pd, "Hale", "Agent")
	default:
		return "/var/lib/hale-agent"
	}
}

// Identity is what enrollment established: who the device is and which server it talks to.
type Identity struct {
	Version   int    `json:"version"`
	DeviceID  string `json:"device_id"`
	ServerURL string `json:"server_url"`
	// CAFingerprint is the hex SHA-256 of the pinned CA certificate (ca.pem), checked on load
	// so a swapped ca.pem is noticed.
	CAFingerprint  string        `json:"ca_fingerprint"`
	EnrolledAt     time.Time     `json:"enrolled_at"`
	ReportInterval time.Duration `json:"report_interval_ns,omitempty"`
}

// identityVersion is the only identity format this agent reads.
const identityVersion = 1

// Validate reports what is wrong with an identity read from disk.
func (id *Identity) Validate() error {
	switch {
	case id.Version != identityVersion:
		return fmt.Errorf("identity version %d is not supported (want %d)", id.Version, identityVersion)
	case !ValidID(id.DeviceID):
		return fmt.Errorf("identity has an invalid device ID %q", id.DeviceID)
	case !strings.HasPrefix(id.ServerURL, "https://") || len(id.ServerURL) > 2048:
		return fmt.Errorf("identity has an invalid server URL %q", id.ServerURL)
	case len(id.CAFingerprint) != 64 || strings.Trim(id.CAFingerprint, "0123456789abcdef") != "":
		return errors.New("identity has an invalid CA fingerprint")
	case id.ReportInterval < 0:
		return errors.New("identity has a negative report interval")
	}
	return nil
}

// ValidID reports whether s is a safe device or command ID: 1..128 ASCII letters, digits, '_'
// or '-'. Command IDs name journal files, so this is also what keeps them inside the directory.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// DecodeIdentity parses and validates an identity file.
func DecodeIdentity(b []byte) (*Identity, error) {
	id := new(Identity)
	if err := json.Unmarshal(b, id); err != nil {
		return nil, fmt.Errorf("identity file is corrupt: %w", err)
	}
	if err := id.Validate(); err != nil {
		return nil, err
	}
	return id, nil
}

// Store is a state directory.
type Store struct {
	dir string
}

// Open returns the store in dir, creating dir (0700) if needed. It refuses a directory that
// others may write to or read, since it holds the device key.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("state: empty state directory")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state: resolving %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: creating the state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state: %s is not a directory", dir)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		// Tighten rather than refuse: MkdirAll does not change an existing directory.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state: %s is accessible to other users and could not be made 0700: %w", dir, err)
		}
	}
	return &Store{dir: dir}, nil
}

// OpenExisting is Open for a directory that must already exist: `run` and `status` use it so
// that they never recreate the state directory of an unenrolled or wiped device.
func OpenExisting(dir string) (*Store, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	return Open(dir)
}

// Dir returns the absolute state directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the path of a file in the store.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// Enrolled reports whether an identity file exists.
func (s *Store) Enrolled() bool {
	_, err := os.Stat(s.Path(IdentityFile))
	return err == nil
}

// ReadFile reads a bounded state file.
func (s *Store) ReadFile(name string) ([]byte, error) {
	return readBounded(s.Path(name))
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: corrupt state", path, maxFile)
	}
	return b, nil
}

// WriteFile atomically replaces a state file with data, mode 0600.
func (s *Store) WriteFile(name string, data []byte) error {
	return WriteFileAtomic(s.Path(name), data, 0o600)
}

// WriteFileAtomic writes data to a temporary file next to path, fsyncs it, renames it over path
// and fsyncs the directory, so readers see the old or the new content and never a mix.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: writing %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("state: writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("state: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state: syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("state: replacing %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; NTFS journals the rename
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state: syncing %s: %w", dir, err)
	}
	return nil
}

// LoadIdentity reads the enrollment identity.
func (s *Store) LoadIdentity() (*Identity, error) {
	b, err := s.ReadFile(IdentityFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return DecodeIdentity(b)
}

// SaveIdentity writes the enrollment identity. It is written last during enrollment: its
// presence is what marks the device enrolled.
func (s *Store) SaveIdentity(id *Identity) error {
	id.Version = identityVersion
	if err := id.Validate(); err != nil {
		return fmt.Errorf("state: refusing to save: %w", err)
	}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	return s.WriteFile(IdentityFile, append(b, '\n'))
}

// SaveKey writes the device private key (PKCS#8 PEM, 0600).
func (s *Store) SaveKey(key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("state: encoding the device key: %w", err)
	}
	return s.WriteFile(KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// LoadKey reads the device private key.
func (s *Store) LoadKey() (*ecdsa.PrivateKey, error) {
	b, err := s.ReadFile(KeyFile)
	if err != nil {
		return nil, fmt.Errorf("state: reading the device key: %w", err)
	}
	return DecodeKey(b)
}

// DecodeKey parses a PEM PKCS#8 ECDSA key.
func DecodeKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("state: the device key file is not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("state: the device key is corrupt: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("state: the device key is not an ECDSA key")
	}
	return ek, nil
}

// ParseChain parses a PEM certificate chain, leaf first. It refuses anything but CERTIFICATE
// blocks and an empty chain.
func ParseChain(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for len(certs) < 8 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q in a certificate chain", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing a certificate of the chain: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("the certificate chain holds no certificate")
	}
	return certs, nil
}

// LoadSequence returns the last report sequence number used (0 when none).
func (s *Store) LoadSequence() (uint64, error) {
	b, err := s.ReadFile(SequenceFile)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("state: the sequence file is corrupt: %w", err)
	}
	return n, nil
}

// SaveSequence records the last report sequence number used.
func (s *Store) SaveSequence(n uint64) error {
	return s.WriteFile(SequenceFile, []byte(strconv.FormatUint(n, 10)+"\n"))
}

// Purge removes the device key first (so that whatever happens next, the identity is unusable)
// and then the whole state directory.
func (s *Store) Purge() error {
	if err := os.Remove(s.Path(KeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: removing the device key: %w", err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("state: removing %s: %w", s.dir, err)
	}
	if _, err := os.Lstat(s.dir); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %s still exists after removal", s.dir)
	}
	return nil
}

// ResetEnrollment removes the enrollment files (identity first, so a crash midway leaves the
// device unenrolled rather than half-enrolled) but keeps the directory. Used by enroll --force.
func (s *Store) ResetEnrollment() error {
	for _, name := range []string{IdentityFile, KeyFile, CertFile, CAFile, SequenceFile} {
		if err := os.Remove(s.Path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: removing %s: %w", name, err)
		}
	}
	if err := os.RemoveAll(s.Path(CommandsDir)); err != nil {
		return fmt.Errorf("state: removing the command journal: %w", err)
	}
	return syncDir(s.dir)
}
