package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/mdmserver"
)

// newRestoreCommand is `mdmserver restore`: an offline restore of an `mdmctl backup` archive
// into a new data directory.
func newRestoreCommand() *cobra.Command {
	var from, data, auditKey string
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data DIR [--audit-key FILE]",
		Short: "Restore a backup into a new data directory (offline)",
		Long: `restore makes the data directory DIR, which must not exist, from a backup archive written
by "mdmctl backup" (FILE, or - for standard input). It checks every file against the archive's
manifest and verifies the restored audit log: every entry and checkpoint, and the checkpoint signed
just before the snapshot. Give --audit-key, the audit.pub you kept apart from the server, so the
log is checked against a key the archive did not bring; without it the archive's own key is used,
which proves the log is intact but not whose it is.

The master key is not in a backup. Start the server on DIR with the original one: copy master.key
into DIR (mode 0600), or set HALE_MASTER_KEY or master_key_file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || data == "" {
				return fmt.Errorf("restore: --from FILE and --data DIR are required")
			}
			var key string
			if auditKey != "" {
				b, err := os.ReadFile(auditKey)
				if err != nil {
					return fmt.Errorf("restore: --audit-key: %w", err)
				}
				key = string(b)
			}
			var in io.Reader = cmd.InOrStdin()
			if from != "-" {
				f, err := os.Open(from)
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				defer f.Close()
				in = f
			}
			res, err := mdmserver.Restore(cmd.Context(), in, data, key)
			if err != nil {
				return err
			}
			keyFrom := "the key in the backup (pass --audit-key to check against the one you kept)"
			if res.PinnedKey {
				keyFrom = auditKey
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "restored %s into %s: %d files; backup taken %s by %s\n", from, data, len(res.Manifest.Files),
				res.Manifest.CreatedAt.Format("2006-01-02 15:04:05Z07:00"), res.Manifest.ServerVersion)
			fmt.Fprintf(out, "audit log verified: %d entries; the checkpoint signed at the backup covers %d of them and matches (key: %s)\n",
				res.AuditEntries, res.Checkpoint.N, keyFrom)
			fmt.Fprintf(out, "next: put the master key in place (%s/master.key, mode 0600, or HALE_MASTER_KEY), then start mdmserver --data %s\n", data, data)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the backup archive (- for standard input)")
	f.StringVar(&data, "data", "", "the data directory to create; it must not exist")
	f.StringVar(&auditKey, "audit-key", "", "the audit verifier key (audit.pub) kept apart from the server")
	return cmd
}
