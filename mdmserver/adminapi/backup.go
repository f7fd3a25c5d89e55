package adminapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/backup"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// Backup serves GET /api/v1/backup: a consistent online snapshot of the server's state, as the
// archive package backup writes, for `mdmctl backup`.
type Backup struct {
	// Service takes the backup; nil when the state is in PostgreSQL, which is backed up with
	// its own tools (the request is refused with 501 saying so).
	Service *backup.Service
	Logger  *slog.Logger
}

// postgresBackup is why a server on PostgreSQL takes no backup itself.
const postgresBackup = "this server keeps its state in PostgreSQL: back it up with PostgreSQL's own tools " +
	"(pg_dump for a consistent logical copy, or pg_basebackup with WAL archiving for point-in-time recovery), " +
	"and keep apart, as for any Hale backup, the master key and the data directory's ca/ (the CA's key)"

// Get streams the archive. The backup is on the audit record (inside the archive too) before
// the first byte goes out. An error mid-stream aborts the response, so the client sees a
// broken transfer, never a short archive that looks complete (and the archive's manifest comes
// last, so a cut-off copy is refused by `mdmctl backup` and `mdmserver restore` anyway).
func (h *Backup) Get(w http.ResponseWriter, r *http.Request) {
	if h.Service == nil {
		problem.Error(w, r, http.StatusNotImplemented, "backup-by-database-tools", postgresBackup)
		return
	}
	started := false
	out := writerFunc(func(p []byte) (int, error) {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/gzip")
			w.Header().Set("Content-Disposition", `attachment; filename="hale-backup-`+time.Now().UTC().Format("20060102T150405Z")+`.tar.gz"`)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
		return w.Write(p)
	})
	m, err := h.Service.Write(r.Context(), out, httpapi.Entry(r, httpapi.Event{}))
	switch {
	case err != nil && !started:
		httpapi.Internal(h.Logger, w, r, err)
	case err != nil:
		h.Logger.ErrorContext(r.Context(), "backup failed mid-stream", "err", err)
		panic(http.ErrAbortHandler)
	default:
		var size int64
		for _, f := range m.Files {
			size += f.Size
		}
		h.Logger.InfoContext(r.Context(), "backup taken", "actor", httpapi.Actor(r), "files", len(m.Files), "bytes", size)
	}
}

// writerFunc is an io.Writer from a function.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
