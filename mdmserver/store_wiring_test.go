package mdmserver_test

import (
	"strings"
	"testing"

	"github.com/halemdm/hale/mdmserver"
)

// The database options: a PostgreSQL URL or nothing (bbolt); an access replica needs the
// database; the URL, which may hold a password, is redacted where the configuration is shown.
func TestDatabaseConfig(t *testing.T) {
	for _, tc := range []struct {
		database, role, wantErr string
	}{
		{"", "", ""},
		{"", mdmserver.RolePrimary, ""},
		{"postgres://hale:secret@db/hale", mdmserver.RoleAccess, ""},
		{"mysql://db/hale", "", "database: want a postgres:// URL"},
		{"", mdmserver.RoleAccess, "role: an access replica needs"},
		{"postgres://db/hale", "reader", `role "reader"`},
	} {
		cfg := mdmserver.Defaults()
		cfg.Database, cfg.Role = tc.database, tc.role
		err := cfg.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("database %q role %q: %v, want %q", tc.database, tc.role, err, tc.wantErr)
		}
	}
	cfg := mdmserver.Defaults()
	cfg.Database = "postgres://hale:secret@db/hale"
	if got := cfg.Redacted()["database"]; got != "[redacted]" {
		t.Errorf("database shown as %v", got)
	}
}
