package pgmdm

import (
	"context"
	"fmt"
)

// ImportedCommand is a command queued for one enrollment on another storage, its body as that
// storage kept it: sealed under purpose "mdm-command/"+UUID (boltstore's queue and this storage
// seal with the same purpose, so the bytes move without being opened).
type ImportedCommand struct {
	EnrollmentID string
	UUID         string
	RequestType  string
	Sealed       []byte
	// NotNow says the enrollment last answered NotNow to it.
	NotNow bool
}

// notNowResult is the result recorded for an imported NotNow answer: the schema wants an XML
// body, and the device's own report was not kept by the storage the command comes from.
const notNowResult = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>Status</key><string>NotNow</string></dict></plist>
`

// ImportQueue queues cmds in one transaction, in the order given (each enrollment's queue keeps
// it): a command queued for several enrollments is stored once. The enrollments must exist
// (replayed before). Every body must already be sealed under the master key the server will
// open it with; it is stored in this storage's envelope without being opened.
func (s *Storage) ImportQueue(ctx context.Context, cmds []ImportedCommand) (err error) {
	if len(cmds) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgmdm: import queue: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the error that made us roll back is the one worth returning
		}
	}()
	for i, c := range cmds {
		switch {
		case c.EnrollmentID == "" || len(c.EnrollmentID) > maxIDLen, c.UUID == "" || len(c.UUID) > maxUUIDLen,
			c.RequestType == "" || len(c.RequestType) > maxTypeLen:
			return fmt.Errorf("pgmdm: import queue: command %q for %q does not fit nanomdm's schema", c.UUID, c.EnrollmentID)
		case len(c.Sealed) == 0 || len(c.Sealed) > MaxCommandSize+1024:
			return fmt.Errorf("pgmdm: import queue: command %s has a body of %d bytes", c.UUID, len(c.Sealed))
		}
		if _, err = tx.ExecContext(ctx, `INSERT INTO commands (command_uuid, request_type, command) VALUES ($1, $2, $3)
			ON CONFLICT (command_uuid) DO NOTHING`, c.UUID, c.RequestType, string(envelope(c.Sealed))); err != nil {
			return fmt.Errorf("pgmdm: import queue: command %s: %w", c.UUID, err)
		}
		// created_at orders a queue (view_queue): one microsecond apart, in the order given,
		// all before anything queued after the import.
		if _, err = tx.ExecContext(ctx, `INSERT INTO enrollment_queue (id, command_uuid, created_at)
			VALUES ($1, $2, LOCALTIMESTAMP - make_interval(secs => $3::float8 / 1e6))`,
			c.EnrollmentID, c.UUID, len(cmds)-i); err != nil {
			return fmt.Errorf("pgmdm: import queue: command %s for %s: %w", c.UUID, c.EnrollmentID, err)
		}
		if c.NotNow {
			if _, err = tx.ExecContext(ctx, `INSERT INTO command_results (id, command_uuid, status, result, not_now_at, not_now_tally)
				VALUES ($1, $2, 'NotNow', $3, LOCALTIMESTAMP, 1)`, c.EnrollmentID, c.UUID, notNowResult); err != nil {
				return fmt.Errorf("pgmdm: import queue: NotNow of %s for %s: %w", c.UUID, c.EnrollmentID, err)
			}
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("pgmdm: import queue: %w", err)
	}
	return nil
}

// ImportUnlockToken keeps a device's unlock token (what ClearPasscode needs) that another storage
// kept, unless the device already has one here. nanomdm's migration replays only the device's
// last TokenUpdate, which carries the token only if it was the first.
func (s *Storage) ImportUnlockToken(ctx context.Context, deviceID string, token []byte) error {
	if len(token) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE devices SET unlock_token = $2, unlock_token_at = LOCALTIMESTAMP
		WHERE id = $1 AND unlock_token IS NULL`, deviceID, token)
	if err != nil {
		return fmt.Errorf("pgmdm: unlock token of %s: %w", deviceID, err)
	}
	return nil
}

// Counts is what nanomdm's tables hold, for comparing a copy with its source.
type Counts struct {
	// Enrollments are the enabled enrollments; Associations the certificate associations;
	// Queued the commands queued, one per enrollment and command.
	Enrollments, Associations, Queued int64
}

// Count returns what nanomdm's tables hold.
func (s *Storage) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM enrollments WHERE enabled),
		(SELECT count(*) FROM cert_auth_associations), (SELECT count(*) FROM enrollment_queue)`).
		Scan(&c.Enrollments, &c.Associations, &c.Queued)
	if err != nil {
		return c, fmt.Errorf("pgmdm: %w", err)
	}
	return c, nil
}

// Reset deletes every enrollment, command, push certificate and certificate association: only
// for undoing an import that failed half-way into a database that was empty before it.
func (s *Storage) Reset(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `TRUNCATE devices, users, enrollments, commands, command_results,
		enrollment_queue, push_certs, cert_auth_associations`)
	if err != nil {
		return fmt.Errorf("pgmdm: reset: %w", err)
	}
	return nil
}
