package inventory

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/mod/semver"
)

// Filter selects devices; empty fields match everything.
type Filter struct {
	State State
	Group string
	Owner string
	// Wipe selects devices whose unfinished wipe is in this state (no API filters on it; the
	// server finds the wipes to finish at start with it).
	Wipe WipeState
	// AgentOlderThan selects agents whose reported version is older than this semantic version
	// (see AgentOutdated).
	AgentOlderThan string
}

// Validate reports a filter that can match nothing because a state in it is unknown.
func (f Filter) Validate() error {
	if f.State != "" && !f.State.Valid() {
		return fmt.Errorf("%w: filter state %q is not one of %v", ErrInvalid, f.State, States)
	}
	if f.Wipe != "" && !f.Wipe.Valid() {
		return fmt.Errorf("%w: filter wipe state %q is not %q or %q", ErrInvalid, f.Wipe, WipePending, WipeIncomplete)
	}
	if f.AgentOlderThan != "" && !semver.IsValid(f.AgentOlderThan) {
		return fmt.Errorf("%w: filter agent version %q is not a semantic version such as v1.4.0", ErrInvalid, f.AgentOlderThan)
	}
	return nil
}

// Matches reports whether f selects d. It reads only d's State, Group, Owner, Wipe, Platform
// and AgentVersion, so a backend may decode just those to filter.
func (f Filter) Matches(d *Device) bool {
	return (f.State == "" || d.State == f.State) && (f.Group == "" || d.Group == f.Group) &&
		(f.Owner == "" || d.Owner == f.Owner) && (f.Wipe == "" || d.Wipe != nil && d.Wipe.State == f.Wipe) &&
		(f.AgentOlderThan == "" || d.Platform == PlatformAgent && AgentOutdated(d.AgentVersion, f.AgentOlderThan))
}

// AgentOutdated reports whether an agent reporting version runs something older than current
// (both semantic versions, "v1.2.3"). A version that is not one (empty: an agent from before
// versions were reported; "devel": a build without a release version) counts as outdated:
// what cannot be told current is treated as not current.
func AgentOutdated(version, current string) bool {
	if !semver.IsValid(version) {
		return true
	}
	return semver.Compare(version, current) < 0
}

// Paging limits of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// List returns up to limit devices matching f, in ID order, starting after cursor (empty: from
// the start), and the cursor of the next page (empty: no more matches). limit <= 0 means
// DefaultLimit; more than MaxLimit is MaxLimit. Cursors are opaque and stay valid while devices
// are added or changed: each device present for the whole listing is returned exactly once.
func List(ctx context.Context, r Repository, f Filter, cursor string, limit int) ([]Device, string, error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	after, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	devs, more, err := r.List(ctx, f, after, limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more && len(devs) > 0 {
		next = encodeCursor(devs[len(devs)-1].ID)
	}
	return devs, next, nil
}

// Count returns how many devices match f.
func Count(ctx context.Context, r Repository, f Filter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	return r.Count(ctx, f)
}

// cursorPrefix versions the cursor format so it can change without misreading old cursors.
const cursorPrefix = "v1:"

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	if len(c) > 128 {
		return "", ErrBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", ErrBadCursor
	}
	id, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok || !ValidID(id) {
		return "", ErrBadCursor
	}
	return id, nil
}
