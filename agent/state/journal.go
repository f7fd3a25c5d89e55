package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
)

// Phase is how far the agent got with a command. It is recorded before each step so a restart
// neither runs a finished command twice nor forgets to report it.
type Phase string

// The phases of a command, in order.
const (
	PhaseStarted  Phase = "started"  // about to act; on restart, act again (commands are idempotent)
	PhaseDone     Phase = "done"     // acted; Result holds the outcome, not yet acknowledged
	PhaseReported Phase = "reported" // the server acknowledged Result
)

// Result statuses. A selective wipe is done only when every managed data path was removed or
// absent; partial when any was refused or failed (the data is still there).
const (
	StatusDone    = "done"
	StatusPartial = "partial"
	StatusFailed  = "failed"
)

// Result is a command's outcome as posted to the server (POST /agent/v1/commands/{id}/result),
// and as the journal keeps it until the server acknowledged it. Removed lists the paths a wipe
// removed, for servers that predate Paths, every path's outcome.
type Result = api.AgentCommandResult

// Outcomes of one managed data path in a selective wipe.
const (
	OutcomeRemoved = "removed" // it existed and is gone
	OutcomeAbsent  = "absent"  // nothing was there
	OutcomeRefused = "refused" // the agent would not touch it; Reason says why
	OutcomeFailed  = "failed"  // removing it did not finish; Reason says why
)

// PathResult is what a selective wipe did with one path: Path is on this device (a policy's
// "~/" entry expanded in one user's home), Managed the policy's entry it came from when it
// differs.
type PathResult = api.PathResult

// Entry is one command's journal record.
type Entry struct {
	ID     string  `json:"id"`
	Type   string  `json:"type"`
	Mode   string  `json:"mode,omitempty"`
	Phase  Phase   `json:"phase"`
	Result *Result `json:"result,omitempty"`
	// Unenroll is set on a wipe that acted: once its result is delivered (or given up on), the
	// agent removes its key and state.
	Unenroll  bool      `json:"unenroll,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// maxJournal bounds the journal: beyond it, the oldest reported entries are forgotten. A
// command redelivered after that long is a server bug; the agent would run it again, which is
// safe because lock and wipe are idempotent.
const maxJournal = 256

// DecodeEntry parses and validates a journal entry.
func DecodeEntry(b []byte) (*Entry, error) {
	e := new(Entry)
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("journal entry is corrupt: %w", err)
	}
	if !ValidID(e.ID) {
		return nil, fmt.Errorf("journal entry has an invalid command ID %q", e.ID)
	}
	switch e.Phase {
	case PhaseStarted:
	case PhaseDone, PhaseReported:
		if e.Result == nil || (e.Result.Status != "done" && e.Result.Status != "failed") {
			return nil, fmt.Errorf("journal entry %s is %s without a valid result", e.ID, e.Phase)
		}
	default:
		return nil, fmt.Errorf("journal entry %s has an unknown phase %q", e.ID, e.Phase)
	}
	return e, nil
}

func (s *Store) entryPath(id string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("state: invalid command ID %q", id)
	}
	return filepath.Join(s.dir, CommandsDir, id+".json"), nil
}

// Entry returns a command's journal entry, or nil when the command is unknown.
func (s *Store) Entry(id string) (*Entry, error) {
	p, err := s.entryPath(id)
	if err != nil {
		return nil, err
	}
	b, err := readBounded(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: reading the journal: %w", err)
	}
	return DecodeEntry(b)
}

// Record durably writes a command's journal entry.
func (s *Store) Record(e *Entry) error {
	p, err := s.entryPath(e.ID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("state: creating the journal: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return WriteFileAtomic(p, b, 0o600)
}

// Unreported returns the journal entries not yet acknowledged by the server, oldest first.
// Corrupt entries are skipped and returned as errors so the caller can log them.
func (s *Store) Unreported() ([]*Entry, []error) {
	entries, errs := s.Entries()
	out := entries[:0]
	for _, e := range entries {
		if e.Phase != PhaseReported {
			out = append(out, e)
		}
	}
	return out, errs
}

// Entries returns every journal entry, oldest first; corrupt ones are returned as errors.
func (s *Store) Entries() ([]*Entry, []error) {
	des, err := os.ReadDir(filepath.Join(s.dir, CommandsDir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{fmt.Errorf("state: reading the journal: %w", err)}
	}
	var (
		out  []*Entry
		errs []error
	)
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !de.Type().IsRegular() || !ValidID(id) {
			continue
		}
		e, err := s.Entry(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if e != nil {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdatedAt.Before(out[j].UpdatedAt) })
	return out, errs
}

// Prune forgets the oldest reported entries beyond the journal's bound.
func (s *Store) Prune() error {
	entries, _ := s.Entries()
	excess := len(entries) - maxJournal
	for _, e := range entries {
		if excess <= 0 {
			break
		}
		if e.Phase != PhaseReported {
			continue
		}
		p, _ := s.entryPath(e.ID)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state: pruning the journal: %w", err)
		}
		excess--
	}
	return nil
}
