package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxConfigFile bounds the profile file and any PEM file mdmctl reads.
const maxConfigFile = 1 << 20

// profile is what login saves: where the server is, the token, and the CA root it pinned.
type profile struct {
	Server string `json:"server"`
	Token  string `json:"token"`
	// RootPEM is the server's CA root, pinned at login; empty means the system roots.
	RootPEM string `json:"ca_pem,omitempty"`
}

// configFile is the profile file: named profiles and the one used when none is named.
type configFile struct {
	Current  string              `json:"current,omitempty"`
	Profiles map[string]*profile `json:"profiles"`
}

// configPath is $HALE_CONFIG, else $XDG_CONFIG_HOME/hale/mdmctl.json, else
// ~/.config/hale/mdmctl.json.
func (a *app) configPath() (string, error) {
	if p := a.getenv("HALE_CONFIG"); p != "" {
		return p, nil
	}
	if x := a.getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "hale", "mdmctl.json"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("no profile file: set HALE_CONFIG or HOME: %w", err)
		}
	}
	return filepath.Join(home, ".config", "hale", "mdmctl.json"), nil
}

// loadConfig reads the profile file; a missing file is an empty configuration.
func loadConfig(path string) (*configFile, error) {
	cf := &configFile{Profiles: map[string]*profile{}}
	b, err := readFileLimited(path, maxConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return cf, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading profiles: %w", err)
	}
	if err := json.Unmarshal(b, cf); err != nil {
		return nil, fmt.Errorf("reading profiles %s: %w", path, err)
	}
	if cf.Profiles == nil {
		cf.Profiles = map[string]*profile{}
	}
	return cf, nil
}

// save writes the profile file with mode 0600 (it holds tokens), creating its directory 0700.
// The file is replaced atomically so a crash never leaves half a file.
func (cf *configFile) save(path string) error {
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the profile directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".mdmctl-*.json")
	if err != nil {
		return fmt.Errorf("writing profiles: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing profiles: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing profiles: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing profiles: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing profiles: %w", err)
	}
	return nil
}

// profileName is --profile, else $HALE_PROFILE, else the file's current profile, else
// "default"; named says whether the user asked for it.
func (a *app) profileName(cf *configFile) (name string, named bool) {
	if n := firstNonEmpty(a.profile, a.getenv("HALE_PROFILE")); n != "" {
		return n, true
	}
	if cf != nil && cf.Current != "" {
		return cf.Current, false
	}
	return "default", false
}

// settings are the resolved connection settings.
type settings struct {
	server, token string
	roots         *x509.CertPool // nil: system roots
}

// resolve applies the precedence flags > environment > profile. A profile's token and CA apply
// only when the server in effect is the profile's: a token is never sent to another server.
func (a *app) resolve() (settings, error) {
	var s settings
	path, err := a.configPath()
	if err != nil {
		return s, err
	}
	cf, err := loadConfig(path)
	if err != nil {
		return s, err
	}
	name, named := a.profileName(cf)
	p := cf.Profiles[name]
	if p == nil && named {
		return s, usagef("no profile %q in %s: run mdmctl login --profile %s", name, path, name)
	}
	if p == nil {
		p = &profile{}
	}

	server := firstNonEmpty(a.server, a.getenv("HALE_SERVER"), p.Server)
	if server == "" {
		return s, usagef("no server: pass --server, set HALE_SERVER or run mdmctl login")
	}
	if s.server, err = normalizeServer(server); err != nil {
		return s, err
	}
	ownServer := p.Server != "" && p.Server == s.server
	if !ownServer {
		p = &profile{}
	}
	s.token = firstNonEmpty(a.token, a.getenv("HALE_TOKEN"), p.Token)
	if caFile := firstNonEmpty(a.caFile, a.getenv("HALE_CA_FILE")); caFile != "" {
		if s.roots, _, err = readCAFile(caFile); err != nil {
			return s, err
		}
	} else if p.RootPEM != "" {
		if s.roots, _, err = parsePEMCerts([]byte(p.RootPEM)); err != nil {
			return s, fmt.Errorf("profile %q: pinned CA: %w", name, err)
		}
	}
	return s, nil
}

// client returns an API client with the resolved settings; commands that need a token fail
// with exitAuth without one.
func (a *app) client() (*client, error) {
	s, err := a.resolve()
	if err != nil {
		return nil, err
	}
	if s.token == "" {
		return nil, codedError{exitAuth, errors.New("no token: pass --token, set HALE_TOKEN or run mdmctl login")}
	}
	return &client{base: s.server, token: s.token, http: a.httpClient(newTransport(s.roots))}, nil
}

// readCAFile reads a PEM file of one or more CA certificates.
func readCAFile(path string) (*x509.CertPool, []*x509.Certificate, error) {
	b, err := readFileLimited(path, maxConfigFile)
	if err != nil {
		return nil, nil, fmt.Errorf("CA file: %w", err)
	}
	pool, certs, err := parsePEMCerts(b)
	if err != nil {
		return nil, nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	return pool, certs, nil
}

// parsePEMCerts parses every CERTIFICATE block; there must be at least one.
func parsePEMCerts(b []byte) (*x509.CertPool, []*x509.Certificate, error) {
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing a certificate: %w", err)
		}
		pool.AddCert(c)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, errors.New("no PEM CERTIFICATE block")
	}
	return pool, certs, nil
}

// readFileLimited reads a local file of at most limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

// readLimited reads all of r, refusing more than limit bytes; name says what r is.
func readLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}
