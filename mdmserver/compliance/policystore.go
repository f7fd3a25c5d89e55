// Package compliance keeps Hale's compliance state: the versioned policies and their
// assignments, every device's posture and verdict, and the access decision index built from
// them.
//
// Every change that can move a verdict (a posture report, a policy or assignment change, a
// device's lock or wipe, time passing) goes through the Engine, which evaluates, commits the
// posture and verdict to the store (a Repository), and only then updates the in-memory access.Index and tells the
// change hooks, in that order. The Engine keeps every device's posture and verdict in memory so
// that re-evaluating the whole fleet after a policy change reads nothing from disk. An access
// replica's Engine, on a store another server writes, evaluates nothing of its own: it reads
// what that server committed (Engine.Refresh, Engine.PoliciesChanged) and publishes it.
package compliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Errors returned by the PolicyStore.
var (
	ErrNotFound      = errors.New("compliance: no such policy")
	ErrInUse         = errors.New("compliance: policy is assigned; unassign it before deleting")
	ErrInvalidName   = errors.New("compliance: invalid policy name")
	ErrInvalidTarget = errors.New("compliance: invalid assignment target")
)

// maxUpdatedBy bounds the recorded author of a policy version.
const maxUpdatedBy = 256

// StoredPolicy is one version of a policy as stored: the source document as the author sent it
// and the policy parsed from it.
type StoredPolicy struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Source    []byte    `json:"source"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	// Policy is Source parsed, with Name and Version set. It is shared: treat it as read-only.
	Policy *policies.Policy `json:"-"`
}

// Target kinds of an assignment, from the weakest to the strongest.
const (
	TargetDefault = "default" // every device without a group or device assignment
	TargetGroup   = "group"   // every device of a group without a device assignment
	TargetDevice  = "device"  // one device, by ID
)

// Target is what a policy is assigned to. Name is empty for the default target.
type Target struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
}

// Validate checks a target: a known kind, and a name exactly when the kind needs one.
func (t Target) Validate() error {
	switch t.Kind {
	case TargetDefault:
		if t.Name != "" {
			return fmt.Errorf("%w: the default target takes no name (got %q)", ErrInvalidTarget, t.Name)
		}
		return nil
	case TargetGroup, TargetDevice:
		if t.Name == "" || len(t.Name) > 256 || strings.IndexByte(t.Name, 0) >= 0 {
			return fmt.Errorf("%w: a %s target needs a name of 1 to 256 bytes", ErrInvalidTarget, t.Kind)
		}
		return nil
	}
	return fmt.Errorf("%w: kind %q is not %q, %q or %q", ErrInvalidTarget, t.Kind, TargetDefault, TargetGroup, TargetDevice)
}

// Assignment binds a policy to a target.
type Assignment struct {
	Target Target `json:"target"`
	Policy string `json:"policy"`
}

// PolicyStore keeps versioned policies and their assignments in the store. Current policies
// and assignments are cached in memory, so Effective never touches the disk.
//
// Several servers may share one store. Every rule a change depends on (a policy assigned cannot
// be deleted, only an existing policy can be assigned) is checked inside the unit of work that
// makes the change, on the stored records, never on the memory, which may not yet hold another
// server's commit. Every change also counts up the store's policy generation
// (PolicyRepository.PolicyGeneration) in that unit of work; Generation is the one the memory
// holds, so a caller can tell, inside its own unit of work, whether the memory is current.
type PolicyStore struct {
	st  Store
	now func() time.Time

	// changing orders this server's changes and reloads. It is held across their unit of work,
	// so nothing that runs inside a unit of work may take it. It is no rule's guard across
	// servers: the checks inside each change's unit of work are.
	changing sync.Mutex
	// mu guards the memory below and is never held across a unit of work: units of work on
	// other goroutines read the memory (checkPolicies, Effective) while they hold the store's
	// writer, so waiting for the store under mu would deadlock with them.
	mu       sync.RWMutex
	current  map[string]*StoredPolicy
	assigned map[Target]string
	gen      uint64
}

// PolicyOption configures a PolicyStore.
type PolicyOption func(*PolicyStore)

// WithPolicyClock sets the clock that stamps UpdatedAt (tests).
func WithPolicyClock(now func() time.Time) PolicyOption {
	return func(s *PolicyStore) { s.now = now }
}

// NewPolicyStore returns a PolicyStore on st, loading the current policies and assignments. A
// stored policy that no longer parses is an error: the server must not guess which rules apply.
func NewPolicyStore(ctx context.Context, st Store, opts ...PolicyOption) (*PolicyStore, error) {
	s := &PolicyStore{st: st, now: time.Now, current: map[string]*StoredPolicy{}, assigned: map[Target]string{}}
	for _, o := range opts {
		o(s)
	}
	loaded, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	s.install(loaded)
	return s, nil
}

// policyState is the policies and assignments as one unit of work read them, at generation gen.
type policyState struct {
	current  map[string]*StoredPolicy
	assigned map[Target]string
	gen      uint64
}

// install makes st the memory. The caller holds s.changing and s.mu (or is NewPolicyStore).
func (s *PolicyStore) install(st *policyState) {
	s.current, s.assigned, s.gen = st.current, st.assigned, st.gen
}

// read loads the current policies, parsed, and the assignments from the store.
func (s *PolicyStore) read(ctx context.Context) (*policyState, error) {
	var st *policyState
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		st, err = load(ctx, tx.Compliance())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: load policies: %w", err)
	}
	return st, nil
}

// load reads, through r, the current policies (parsed), the assignments and the generation
// they are at.
func load(ctx context.Context, r PolicyRepository) (*policyState, error) {
	st := &policyState{current: map[string]*StoredPolicy{}, assigned: map[Target]string{}}
	gen, err := r.PolicyGeneration(ctx)
	if err != nil {
		return nil, err
	}
	st.gen = gen
	stored, err := r.CurrentPolicies(ctx)
	if err != nil {
		return nil, err
	}
	for _, sp := range stored {
		if err := parseStored(sp); err != nil {
			return nil, fmt.Errorf("policy %q: %w", sp.Name, err)
		}
		st.current[sp.Name] = sp
	}
	as, err := r.Assignments(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		if a.Target.Validate() != nil {
			return nil, fmt.Errorf("malformed assignment to %s %q", a.Target.Kind, a.Target.Name)
		}
		st.assigned[a.Target] = a.Policy
	}
	return st, nil
}

// Generation is the policy generation the memory holds: that of the last change this store
// made or the last load (NewPolicyStore, Reload). It equals the stored
// PolicyRepository.PolicyGeneration exactly when no other server has changed a policy or an
// assignment since.
func (s *PolicyStore) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// change runs fn, which checks its rules on the stored records and writes, in one unit of work
// that also counts up the policy generation. Once committed, apply brings the memory along,
// unless the memory had missed another server's change (the generation before this one was
// not the memory's): then the memory is what this unit of work read after writing, so it never
// holds less than the store did.
func (s *PolicyStore) change(ctx context.Context, fn func(r PolicyRepository) error, apply func()) error {
	s.changing.Lock()
	defer s.changing.Unlock()
	memGen := s.Generation() // only changes and reloads move it, and they wait for s.changing
	var fresh *policyState
	var gen uint64
	err := s.st.Update(ctx, func(tx Tx) error {
		fresh = nil
		r := tx.Compliance()
		if err := fn(r); err != nil {
			return err
		}
		var err error
		if gen, err = r.NextPolicyGeneration(ctx); err != nil {
			return err
		}
		if gen != memGen+1 {
			fresh, err = load(ctx, r)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh != nil {
		s.install(fresh)
		return nil
	}
	apply()
	s.gen = gen
	return nil
}

// storedCurrent returns the current stored version of name, through r, or nil.
func storedCurrent(ctx context.Context, r PolicyRepository, name string) (*StoredPolicy, error) {
	all, err := r.CurrentPolicies(ctx)
	if err != nil {
		return nil, err
	}
	for _, sp := range all {
		if sp.Name == name {
			return sp, nil
		}
	}
	return nil, nil
}

// Reload reads the current policies and assignments from the store again and makes them the
// ones Effective resolves. A server calls it when another server changed
// a policy or an assignment; it writes nothing and re-evaluates nothing (Engine.PoliciesChanged
// runs it and republishes). A stored policy that no longer parses, or a read error, fails
// Reload and leaves the policies as they were.
func (s *PolicyStore) Reload(ctx context.Context) error {
	// Read in turn with this store's changes: a change it makes itself is then never
	// overwritten by a read from before it. The generation comes from the same read as the
	// policies.
	s.changing.Lock()
	defer s.changing.Unlock()
	loaded, err := s.read(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.install(loaded)
	return nil
}

// parseStored checks a stored record and parses its source again into sp.Policy.
func parseStored(sp *StoredPolicy) error {
	if err := policies.ValidName(sp.Name); err != nil || sp.Version < 1 {
		return fmt.Errorf("malformed stored policy (name %q, version %d)", sp.Name, sp.Version)
	}
	p, err := policies.Parse(sp.Source)
	if err != nil {
		return err
	}
	p.Name, p.Version = sp.Name, sp.Version
	sp.Policy = p
	return nil
}

// Put stores source as the next version of the named policy. The source is parsed first; a
// *policies.ValidationError (field and line of every problem) is returned as is and nothing is
// stored. Versions start at 1 and are never reused, also after Delete. The new version is
// committed before Put returns; devices are not re-evaluated here (the caller runs
// Engine.ReevaluateAll).
func (s *PolicyStore) Put(ctx context.Context, name string, source []byte, by string) (*StoredPolicy, error) {
	if err := policies.ValidName(name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	p, err := policies.Parse(source)
	if err != nil {
		return nil, err
	}
	if len(by) > maxUpdatedBy {
		by = by[:maxUpdatedBy]
	}
	sp := &StoredPolicy{Name: name, Source: bytes.Clone(source), UpdatedAt: s.now().UTC(), UpdatedBy: by, Policy: p}
	err = s.change(ctx, func(r PolicyRepository) error {
		// The version follows the last one stored, by any server.
		last, err := r.LastPolicyVersion(ctx, name)
		if err != nil {
			return err
		}
		sp.Version = last + 1
		p.Name, p.Version = name, sp.Version
		return r.PutPolicy(ctx, sp)
	}, func() { s.current[name] = sp })
	if err != nil {
		return nil, fmt.Errorf("compliance: store policy %s: %w", name, err)
	}
	return sp, nil
}

// Get returns the current version of the named policy.
func (s *PolicyStore) Get(ctx context.Context, name string) (*StoredPolicy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sp := s.current[name]
	if sp == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	c := *sp
	return &c, nil
}

// GetVersion returns one version of the named policy, also of a deleted policy.
func (s *PolicyStore) GetVersion(ctx context.Context, name string, version int) (*StoredPolicy, error) {
	if policies.ValidName(name) != nil || version < 1 {
		return nil, fmt.Errorf("%w: %q version %d", ErrNotFound, name, version)
	}
	var sp *StoredPolicy
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		if sp, err = tx.Compliance().PolicyVersion(ctx, name, version); err != nil {
			return err
		}
		return parseStored(sp)
	})
	if err != nil {
		return nil, err
	}
	return sp, nil
}

// Versions returns every stored version of the named policy, oldest first.
func (s *PolicyStore) Versions(ctx context.Context, name string) ([]*StoredPolicy, error) {
	if policies.ValidName(name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	var out []*StoredPolicy
	err := s.st.View(ctx, func(tx Tx) error {
		var err error
		if out, err = tx.Compliance().PolicyVersions(ctx, name); err != nil {
			return err
		}
		for _, sp := range out {
			if err := parseStored(sp); err != nil {
				return fmt.Errorf("compliance: policy %s version %d: %w", name, sp.Version, err)
			}
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return out, err
}

// List returns the current version of every policy, by name.
func (s *PolicyStore) List(ctx context.Context) ([]*StoredPolicy, error) {
	s.mu.RLock()
	out := make([]*StoredPolicy, 0, len(s.current))
	for _, sp := range s.current {
		c := *sp
		out = append(out, &c)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *StoredPolicy) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete removes the named policy. Its versions stay readable with GetVersion and its version
// numbers are not reused. A policy that is assigned anywhere is refused with ErrInUse.
func (s *PolicyStore) Delete(ctx context.Context, name string) error {
	err := s.change(ctx, func(r PolicyRepository) error {
		// Both rules on the stored records: another server may have assigned the policy (or
		// deleted it) since this one's memory was loaded.
		cur, err := storedCurrent(ctx, r, name)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		as, err := r.Assignments(ctx)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.Policy == name {
				return fmt.Errorf("%w: %q is assigned to %s %q", ErrInUse, name, a.Target.Kind, a.Target.Name)
			}
		}
		return r.DeletePolicy(ctx, name)
	}, func() { delete(s.current, name) })
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInUse) {
		return err
	}
	if err != nil {
		return fmt.Errorf("compliance: delete policy %s: %w", name, err)
	}
	return nil
}

// Assign makes policyName the policy of target, replacing what was assigned there. The policy
// must exist. Devices are not re-evaluated here (the caller runs Engine.ReevaluateAll).
func (s *PolicyStore) Assign(ctx context.Context, target Target, policyName string) error {
	if err := target.Validate(); err != nil {
		return err
	}
	err := s.change(ctx, func(r PolicyRepository) error {
		// The policy must exist as stored: another server may have deleted it.
		cur, err := storedCurrent(ctx, r, policyName)
		if err != nil {
			return err
		}
		if cur == nil {
			return fmt.Errorf("%w: %q", ErrNotFound, policyName)
		}
		return r.PutAssignment(ctx, Assignment{Target: target, Policy: policyName})
	}, func() { s.assigned[target] = policyName })
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("compliance: assign policy %s: %w", policyName, err)
	}
	return nil
}

// Unassign removes the assignment of target; removing a missing assignment is a no-op.
func (s *PolicyStore) Unassign(ctx context.Context, target Target) error {
	if err := target.Validate(); err != nil {
		return err
	}
	err := s.change(ctx, func(r PolicyRepository) error {
		return r.DeleteAssignment(ctx, target)
	}, func() { delete(s.assigned, target) })
	if err != nil {
		return fmt.Errorf("compliance: unassign %s %q: %w", target.Kind, target.Name, err)
	}
	return nil
}

// Assignments returns every assignment, default first, then groups, then devices, by name.
func (s *PolicyStore) Assignments() []Assignment {
	rank := map[string]int{TargetDefault: 0, TargetGroup: 1, TargetDevice: 2}
	s.mu.RLock()
	out := make([]Assignment, 0, len(s.assigned))
	for t, p := range s.assigned {
		out = append(out, Assignment{Target: t, Policy: p})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Assignment) int {
		if c := rank[a.Target.Kind] - rank[b.Target.Kind]; c != 0 {
			return c
		}
		return strings.Compare(a.Target.Name, b.Target.Name)
	})
	return out
}

// Effective returns the policy that applies to device: its device assignment, else its group's,
// else the default; nil when none applies (evaluation then yields no_policy).
func (s *PolicyStore) Effective(device *inventory.Device) (*StoredPolicy, error) {
	if device == nil {
		return nil, errors.New("compliance: Effective needs a device")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sp, _ := s.effectiveLocked(device.ID, device.Group)
	return sp, nil
}

// effectiveLocked resolves the precedence and also returns which target supplied the policy.
// The caller holds s.mu.
func (s *PolicyStore) effectiveLocked(deviceID, group string) (*StoredPolicy, Target) {
	for _, t := range [...]Target{{TargetDevice, deviceID}, {TargetGroup, group}, {TargetDefault, ""}} {
		if t.Kind != TargetDefault && t.Name == "" {
			continue
		}
		if name, ok := s.assigned[t]; ok {
			if sp := s.current[name]; sp != nil {
				return sp, t
			}
		}
	}
	return nil, Target{}
}
