package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/mdmserver/backup"
)

func (a *app) backupCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Take a consistent online backup of the server (admin)",
		Long: `backup streams a snapshot of the running server into FILE: the database, the CA's
certificates and sealed keys, and the audit log's keys, with a manifest of checksums and the audit
checkpoint signed just before the snapshot. It checks the whole archive before it keeps FILE, and
never overwrites one.

The master key is not in the backup: keep it apart (another place, another custodian). Restore
with "mdmserver restore --from FILE --data DIR", then start the server with the master key.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out FILE is required")
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s exists; backup never overwrites a file", out)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body, err := c.stream(cmd.Context(), "/api/v1/backup")
			if err != nil {
				return err
			}
			defer body.Close()
			m, size, err := saveChecked(out, body)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "backup written to %s: %d files, %d bytes, taken %s\n", out, len(m.Files), size, m.CreatedAt.Format("2006-01-02 15:04:05Z07:00"))
			fmt.Fprintln(a.stdout, "the master key is not in it: keep a copy of the master key apart from the backups")
			return nil
		}),
	}
	cmd.Flags().StringVarP(&out, "out", "f", "", "the archive to write (required; must not exist)")
	return cmd
}

// saveChecked writes r to a temporary file beside path while checking it as an archive, and
// renames it to path only when the whole archive checked out and is synced.
func saveChecked(path string, r io.Reader) (backup.Manifest, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return backup.Manifest{}, 0, err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	cw := &countWriter{w: f}
	m, err := backup.Check(io.TeeReader(r, cw))
	if err == nil {
		// The gzip trailer may be followed by nothing else; reading to EOF makes sure the
		// transfer ended cleanly rather than being cut after the last useful byte.
		_, err = io.Copy(cw, r)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return backup.Manifest{}, 0, fmt.Errorf("backup: %w (nothing was kept)", err)
	}
	if err := os.Link(f.Name(), path); err != nil { // unlike rename, never replaces a file
		return backup.Manifest{}, 0, err
	}
	return m, cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
