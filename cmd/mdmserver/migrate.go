package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/halemdm/hale/mdmserver"
)

// newMigrateCommand is `mdmserver migrate`: an offline copy of a bbolt data directory into an
// empty PostgreSQL database.
func newMigrateCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate --from DATA_DIR --to postgres://...",
		Short: "Copy a data directory's state into an empty PostgreSQL database (offline)",
		Long: `migrate copies the state of the data directory DATA_DIR (its bbolt file, hale.db) into an
empty PostgreSQL database: Hale's records, the certificate authority's database, and nanomdm's
Apple MDM state (enrollments replayed from their check-ins, certificate associations, queued
commands with their sealed bodies). Stop the server first: a running server holds the file.

It refuses a database that holds any state, and a data directory whose audit log does not verify.
After the copy it compares every bucket's key count with the source and verifies the copied audit
log (every entry and checkpoint, with DATA_DIR/audit.pub, ending at the source's latest
checkpoint). The target URL can also come from HALE_DATABASE.

The data directory stays in use: the master key, the CA's key and the audit keys are read from it.
Start the server with --data DATA_DIR --database URL; keep hale.db as the way back until sure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				to = os.Getenv("HALE_DATABASE")
			}
			if from == "" || to == "" {
				return fmt.Errorf("migrate: --from DATA_DIR and --to postgres://... are required")
			}
			res, err := mdmserver.Migrate(cmd.Context(), from, to)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "migrated %s in %s (Apple MDM %s, records %s, verification %s):\n", from, res.Elapsed.Round(1e6),
				res.AppleElapsed.Round(1e6), res.RecordsElapsed.Round(1e6), res.VerifyElapsed.Round(1e6))
			names := make([]string, 0, len(res.Buckets))
			for name, n := range res.Buckets {
				if n > 0 {
					names = append(names, name)
				}
			}
			sort.Strings(names)
			fmt.Fprintf(out, "  Hale records: %d keys in %d buckets, counts verified:", res.Keys, len(names))
			for _, name := range names {
				fmt.Fprintf(out, " %s=%d", name, res.Buckets[name])
			}
			fmt.Fprintf(out, "\n  CA database: %d tables, %d entries", res.CATables, res.CAEntries)
			if res.CAFileImported {
				fmt.Fprintf(out, " (first moved into hale.db from %s/ca/ca.db, now renamed)", from)
			}
			fmt.Fprintln(out)
			fmt.Fprintf(out, "  Apple MDM: %d enrollments (%d devices) from %d check-ins, %d unlock tokens, %d certificate associations, %d queued commands",
				res.Enrollments, res.Devices, res.CheckIns, res.UnlockTokens, res.CertAssociations, res.Queued)
			if res.QueueDropped > 0 {
				fmt.Fprintf(out, " (%d queued for disabled enrollments not moved)", res.QueueDropped)
			}
			fmt.Fprintln(out)
			if res.Checkpoint.N > 0 {
				fmt.Fprintf(out, "  audit log verified: %d entries; the latest checkpoint (%d entries) matches the source's\n", res.AuditEntries, res.Checkpoint.N)
			} else {
				fmt.Fprintf(out, "  audit log verified: %d entries (no checkpoint signed yet)\n", res.AuditEntries)
			}
			fmt.Fprintf(out, "next: start mdmserver --data %s --database <the URL> (the data directory still holds the keys);\n", from)
			fmt.Fprintf(out, "      keep %s/hale.db, untouched, as the way back until you are sure.\n", from)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the data directory to copy (its server stopped)")
	f.StringVar(&to, "to", "", "the PostgreSQL database URL, empty (default $HALE_DATABASE)")
	return cmd
}
