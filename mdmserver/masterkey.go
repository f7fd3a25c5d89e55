package mdmserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/halemdm/hale/internal/seal"
)

// sealedData are the entries of a data directory that hold secrets sealed under the master key:
// the database (push key, signing keys, PINs), the CA's keys and the audit log's key.
var sealedData = []string{"hale.db", "ca", "audit.key.sealed"}

// loadMasterKey returns the master key: HALE_MASTER_KEY (Config.MasterKey), the file
// master_key_file names, or DATA/master.key. DATA/master.key is made only on a fresh install; a
// data directory that already holds sealed data but not its key is refused, and nothing is
// written: a new key could open none of that data.
func loadMasterKey(cfg Config) (*seal.Key, error) {
	switch {
	case cfg.MasterKey != "":
		return seal.Parse(cfg.MasterKey)
	case cfg.MasterKeyFile != "":
		b, err := os.ReadFile(cfg.MasterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read master key file: %w", err)
		}
		return seal.Parse(string(b))
	}
	path := cfg.path("master.key")
	var sealed []string
	for _, name := range sealedData {
		_, err := os.Lstat(cfg.path(name))
		switch {
		case err == nil:
			sealed = append(sealed, name)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("master key: cannot tell whether %s is a fresh install: %w", cfg.DataDir, err)
		}
	}
	if len(sealed) == 0 {
		return seal.LoadOrCreate(path) // a fresh install
	}
	k, err := seal.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("master key missing: %s does not exist, but %s holds data sealed with a master key (%s); "+
			"a new key could not open it, so none was made. Put the original master.key back (mode 0600), "+
			"or give the key with HALE_MASTER_KEY, or name a file holding it with master_key_file (HALE_MASTER_KEY_FILE)",
			path, cfg.DataDir, strings.Join(sealed, ", "))
	}
	return k, err
}
