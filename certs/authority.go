// Package certs is Hale's embedded certificate authority. It runs the smallstep/certificates
// authority in process: a root and an intermediate created on first start with their private keys
// sealed under the master key, device and server certificates with explicit lifetimes, revocation
// kept in the database the caller gives it (WithDB: any smallstep/nosql DB; Hale's server gives
// its own store's), a CRL, and mTLS verification that refuses revoked, expired and foreign client
// certificates.
//
// The package names no database backend. It still links bbolt and smallstep's other drivers:
// smallstep/certificates imports smallstep/nosql, which imports all of them.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql"

	"github.com/halemdm/hale/internal/seal"
)

// Lifetimes of the CA certificates made on first start.
const (
	RootLifetime         = 10 * 365 * 24 * time.Hour
	IntermediateLifetime = 5 * 365 * 24 * time.Hour
)

// Seal purposes of the CA private keys.
const (
	purposeRootKey         = "ca/root.key"
	purposeIntermediateKey = "ca/intermediate.key"
)

// Files in the CA directory.
const (
	fileRoot            = "root.pem"
	fileIntermediate    = "intermediate.pem"
	fileRootKey         = "root.key.sealed"
	fileIntermediateKey = "intermediate.key.sealed"
)

// tables are the tables smallstep/certificates' database keeps (the ones its db.New creates;
// TestTablesAreSmallsteps holds this list to them). Open creates them in the database it is
// given.
var tables = []string{
	"revoked_x509_certs", "x509_certs", "used_ott", "ssh_certs", "ssh_hosts", "ssh_host_principals",
	"ssh_users", "revoked_ssh_certs", "x509_certs_data", "x509_crl",
}

// backdate is subtracted from NotBefore so a peer whose clock runs a little slow accepts a new
// certificate at once.
const backdate = time.Minute

// DefaultCRLURL is the CRL location named in the CRL's issuing distribution point and in issued
// certificates when WithCRLURL is not given: the default listen address of mdmserver.
const DefaultCRLURL = "https://localhost:8443/ca/crl"

// Authority is Hale's certificate authority. It is safe for concurrent use.
type Authority struct {
	dir    string
	key    *seal.Key
	logger *slog.Logger
	now    func() time.Time
	crlURL string

	root, inter *x509.Certificate
	interKey    crypto.Signer
	rootPEM     []byte
	chainPEM    []byte
	rootPool    *x509.CertPool
	interPool   *x509.CertPool
	// advertisedCAs is the root and the intermediate, named to TLS clients.
	advertisedCAs *x509.CertPool

	auth *authority.Authority
	// store is the database WithDB gave; db is smallstep's layer over it.
	store nosql.DB
	db    *db.DB

	revokedMu sync.RWMutex
	revoked   map[string]struct{} // decimal serials, mirrors the authority DB

	crlMu sync.Mutex
	crl   *cachedCRL

	raMu   sync.Mutex
	raCert *x509.Certificate
	raKey  *rsa.PrivateKey

	closeOnce sync.Once
	closeErr  error
}

// Option configures Open.
type Option func(*Authority)

// WithLogger sets the logger; the default discards logs.
func WithLogger(l *slog.Logger) Option {
	return func(a *Authority) {
		if l != nil {
			a.logger = l
		}
	}
}

// WithClock sets the clock used for new CA certificates, the validity of issued certificates and
// client certificate verification. Tests use it to travel in time. Renew and CRL timestamps use
// the real clock because the smallstep authority does.
func WithClock(now func() time.Time) Option {
	return func(a *Authority) {
		if now != nil {
			a.now = now
		}
	}
}

// WithCRLURL sets the public URL of the CRL (the server's /ca/crl). It is written into the CRL's
// issuing distribution point and into issued leaf certificates.
func WithCRLURL(u string) Option {
	return func(a *Authority) {
		if u != "" {
			a.crlURL = u
		}
	}
}

// WithDB sets the database the authority keeps its issued and revoked certificates and its CRL
// in. It is required: the CA must not run without its revocations. Open creates the tables it
// needs; Close leaves the database open, for its owner to close.
func WithDB(d nosql.DB) Option {
	return func(a *Authority) { a.store = d }
}

// Open opens the CA kept in dir (for example DATA/ca) on the database WithDB gives, creating a
// root and an intermediate with ECDSA P-256 keys on first start. Private keys are sealed under
// key; a different master key than the one that created the CA is an error.
func Open(dir string, key *seal.Key, opts ...Option) (*Authority, error) {
	if key == nil {
		return nil, errors.New("certs: a master key is required")
	}
	a := &Authority{
		dir:     dir,
		key:     key,
		logger:  slog.New(slog.DiscardHandler),
		now:     time.Now,
		crlURL:  DefaultCRLURL,
		revoked: make(map[string]struct{}),
	}
	for _, o := range opts {
		o(a)
	}
	if a.store == nil {
		return nil, errors.New("certs: no database: give Open one with WithDB")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: create CA directory: %w", err)
	}
	if err := a.loadOrCreate(); err != nil {
		return nil, err
	}
	if err := a.openAuthority(); err != nil {
		return nil, err
	}
	if _, err := a.refreshCRL(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close shuts the authority down. The database WithDB gave stays open. Calling it again does
// nothing.
func (a *Authority) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.auth.Shutdown() })
	return a.closeErr
}

// Root returns the root certificate.
func (a *Authority) Root() *x509.Certificate { return a.root }

// RootPEM returns the root certificate in PEM form.
func (a *Authority) RootPEM() []byte { return bytes.Clone(a.rootPEM) }

// Intermediate returns the intermediate (issuing) certificate.
func (a *Authority) Intermediate() *x509.Certificate { return a.inter }

// ChainPEM returns the intermediate then the root in PEM form, the chain to send after a leaf.
func (a *Authority) ChainPEM() []byte { return bytes.Clone(a.chainPEM) }

func (a *Authority) path(name string) string { return filepath.Join(a.dir, name) }

// loadOrCreate reads the CA certificates and keys, or creates them. root.pem is written last, so
// a directory without it never held a CA anyone could trust and is safely created again.
func (a *Authority) loadOrCreate() error {
	if _, err := os.Stat(a.path(fileRoot)); errors.Is(err, fs.ErrNotExist) {
		a.logger.Info("creating certificate authority", "dir", a.dir)
		if err := a.create(); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return a.load()
}

func (a *Authority) create() error {
	now := a.now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Hale Root CA", Organization: []string{"Hale"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("certs: create root: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return err
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Hale Intermediate CA", Organization: []string{"Hale"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(IntermediateLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, interKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("certs: create intermediate: %w", err)
	}
	for _, f := range []struct {
		name, purpose string
		key           crypto.Signer
		der           []byte
	}{
		{name: fileRootKey, purpose: purposeRootKey, key: rootKey},
		{name: fileIntermediateKey, purpose: purposeIntermediateKey, key: interKey},
		{name: fileIntermediate, der: interDER},
		{name: fileRoot, der: rootDER},
	} {
		var data []byte
		if f.key != nil {
			pk, err := x509.MarshalPKCS8PrivateKey(f.key)
			if err != nil {
				return err
			}
			data = a.key.Seal(f.purpose, pk)
		} else {
			data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.der})
		}
		if err := writeFileAtomic(a.path(f.name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (a *Authority) load() error {
	var err error
	if a.root, err = readCert(a.path(fileRoot)); err != nil {
		return err
	}
	if a.inter, err = readCert(a.path(fileIntermediate)); err != nil {
		return err
	}
	if err := a.inter.CheckSignatureFrom(a.root); err != nil {
		return fmt.Errorf("certs: %s is not signed by %s: %w", fileIntermediate, fileRoot, err)
	}
	// The root key is not needed to run; opening it proves the master key is the right one for
	// both keys and catches a damaged file at start rather than at the next intermediate rotation.
	if _, err := a.readKey(fileRootKey, purposeRootKey, a.root); err != nil {
		return err
	}
	if a.interKey, err = a.readKey(fileIntermediateKey, purposeIntermediateKey, a.inter); err != nil {
		return err
	}
	a.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.root.Raw})
	a.chainPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.inter.Raw}), a.rootPEM...)
	a.rootPool = x509.NewCertPool()
	a.rootPool.AddCert(a.root)
	a.interPool = x509.NewCertPool()
	a.interPool.AddCert(a.inter)
	a.advertisedCAs = a.rootPool.Clone()
	a.advertisedCAs.AddCert(a.inter)
	return nil
}

func (a *Authority) readKey(name, purpose string, cert *x509.Certificate) (crypto.Signer, error) {
	sealed, err := os.ReadFile(a.path(name))
	if err != nil {
		return nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	der, err := a.key.Open(purpose, sealed)
	if err != nil {
		return nil, fmt.Errorf("certs: cannot open %s in %s: the master key is not the one that created this CA (check HALE_MASTER_KEY or the key file): %w", name, a.dir, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse %s: %w", name, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: %s is not a signing key", name)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: %s does not match its certificate", name)
	}
	return signer, nil
}

// openAuthority starts the embedded smallstep authority on the database WithDB gave.
func (a *Authority) openAuthority() error {
	for _, t := range tables {
		if err := a.store.CreateTable([]byte(t)); err != nil {
			return fmt.Errorf("certs: create CA database table %s: %w", t, err)
		}
	}
	// smallstep's layer over a database it did not open: its Shutdown (from Close) does not
	// close it, since it was never marked up.
	a.db = &db.DB{DB: a.store}
	cfg := &config.Config{
		AuthorityConfig: &config.AuthConfig{
			Backdate: &provisioner.Duration{Duration: backdate},
		},
		CRL: &config.CRLConfig{
			Enabled:          true,
			GenerateOnRevoke: true,
			CacheDuration:    &provisioner.Duration{Duration: crlLifetime},
			IDPurl:           a.crlURL,
		},
	}
	var err error
	a.auth, err = authority.NewEmbedded(
		authority.WithConfig(cfg),
		authority.WithQuietInit(),
		authority.WithDatabase(a.db),
		authority.WithX509RootCerts(a.root),
		authority.WithX509Signer(a.inter, a.interKey),
	)
	if err != nil {
		return fmt.Errorf("certs: start authority: %w", err)
	}
	revoked, err := a.db.GetRevokedCertificates()
	if err != nil {
		a.auth.Shutdown()
		return fmt.Errorf("certs: read revoked certificates: %w", err)
	}
	for _, r := range *revoked {
		a.revoked[r.Serial] = struct{}{}
	}
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: parse %s: %w", path, err)
	}
	return c, nil
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it over path, so a
// crash leaves either the old file or the new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("certs: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	// The rename is durable only once the directory entry is on disk.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("certs: sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() *big.Int {
	max := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, max)
	if err != nil {
		panic("certs: crypto/rand failed: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}
