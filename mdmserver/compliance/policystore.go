// Package compliance keeps Hale's compliance state: the versioned policies and their
// assignments, every device's posture and verdict, and the access decision index built from
// them.
//
// Every change that can move a verdict (a posture report, a policy or assignment change, a
// device's lock or wipe, time passing) goes through the Engine, which evaluates, commits the
// posture and verdict to bbolt, and only then updates the in-memory access.Index and tells the
// change hooks, in that order. The Engine keeps every device's posture and verdict in memory so
// that re-evaluating the whole fleet after a policy change reads nothing from disk.
package compliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"go.etcd.io/bbolt"
)

// Errors returned by the PolicyStore.
var (
	ErrNotFound      = errors.New("compliance: no such policy")
	ErrInUse         = errors.New("compliance: policy is assigned; unassign it before deleting")
	ErrInvalidName   = errors.New("compliance: invalid policy name")
	ErrInvalidTarget = errors.New("compliance: invalid assignment target")
)

var (
	bucketPolicies    = []byte("compliance_policies")        // name -> current StoredPolicy JSON
	bucketPolicyHist  = []byte("compliance_policy_versions") // name \x00 version (8 bytes BE) -> StoredPolicy JSON
	bucketPolicySeq   = []byte("compliance_policy_seq")      // name -> last version (8 bytes BE), kept after delete
	bucketAssignments = []byte("compliance_assignments")     // kind \x00 name -> policy name
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

func (t Target) validate() error {
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

func (t Target) key() []byte { return []byte(t.Kind + "\x00" + t.Name) }

// Assignment binds a policy to a target.
type Assignment struct {
	Target Target `json:"target"`
	Policy string `json:"policy"`
}

// PolicyStore keeps versioned policies and their assignments in bbolt. Current policies and
// assignments are cached in memory, so Effective never touches the disk.
type PolicyStore struct {
	db  *bbolt.DB
	now func() time.Time

	mu       sync.RWMutex
	current  map[string]*StoredPolicy
	assigned map[Target]string
}

// PolicyOption configures a PolicyStore.
type PolicyOption func(*PolicyStore)

// WithPolicyClock sets the clock that stamps UpdatedAt (tests).
func WithPolicyClock(now func() time.Time) PolicyOption {
	return func(s *PolicyStore) { s.now = now }
}

// NewPolicyStore returns a PolicyStore on db, creating its buckets and loading the current
// policies and assignments. A stored policy that no longer parses is an error: the server must
// not guess which rules apply.
func NewPolicyStore(db *bbolt.DB, opts ...PolicyOption) (*PolicyStore, error) {
	s := &PolicyStore{db: db, now: time.Now, current: map[string]*StoredPolicy{}, assigned: map[Target]string{}}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketPolicies, bucketPolicyHist, bucketPolicySeq, bucketAssignments} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: create policy buckets: %w", err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketPolicies).ForEach(func(k, v []byte) error {
			sp, err := decodeStoredPolicy(v)
			if err != nil {
				return fmt.Errorf("policy %q: %w", k, err)
			}
			s.current[sp.Name] = sp
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketAssignments).ForEach(func(k, v []byte) error {
			kind, name, ok := bytes.Cut(k, []byte{0})
			t := Target{Kind: string(kind), Name: string(name)}
			if !ok || t.validate() != nil {
				return fmt.Errorf("malformed assignment key %q", k)
			}
			s.assigned[t] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: load policies: %w", err)
	}
	return s, nil
}

// decodeStoredPolicy decodes a stored record and parses its source again.
func decodeStoredPolicy(v []byte) (*StoredPolicy, error) {
	sp := new(StoredPolicy)
	if err := json.Unmarshal(v, sp); err != nil {
		return nil, err
	}
	if err := policies.ValidName(sp.Name); err != nil || sp.Version < 1 {
		return nil, fmt.Errorf("malformed stored policy (name %q, version %d)", sp.Name, sp.Version)
	}
	p, err := policies.Parse(sp.Source)
	if err != nil {
		return nil, err
	}
	p.Name, p.Version = sp.Name, sp.Version
	sp.Policy = p
	return sp, nil
}

func versionKey(name string, v int) []byte {
	k := make([]byte, len(name)+9)
	copy(k, name)
	binary.BigEndian.PutUint64(k[len(name)+1:], uint64(v))
	return k
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
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		seq := tx.Bucket(bucketPolicySeq)
		last := 0
		if v := seq.Get([]byte(name)); len(v) == 8 {
			last = int(binary.BigEndian.Uint64(v))
		}
		sp.Version = last + 1
		enc, err := json.Marshal(sp)
		if err != nil {
			return err
		}
		if err := seq.Put([]byte(name), binary.BigEndian.AppendUint64(nil, uint64(sp.Version))); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPolicyHist).Put(versionKey(name, sp.Version), enc); err != nil {
			return err
		}
		return tx.Bucket(bucketPolicies).Put([]byte(name), enc)
	})
	if err != nil {
		return nil, fmt.Errorf("compliance: store policy %s: %w", name, err)
	}
	p.Name, p.Version = name, sp.Version
	s.current[name] = sp
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
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketPolicyHist).Get(versionKey(name, version))
		if v == nil {
			return fmt.Errorf("%w: %q version %d", ErrNotFound, name, version)
		}
		var err error
		sp, err = decodeStoredPolicy(v)
		return err
	})
	return sp, err
}

// Versions returns every stored version of the named policy, oldest first.
func (s *PolicyStore) Versions(ctx context.Context, name string) ([]*StoredPolicy, error) {
	if policies.ValidName(name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	var out []*StoredPolicy
	prefix := append([]byte(name), 0)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketPolicyHist).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			sp, err := decodeStoredPolicy(v)
			if err != nil {
				return fmt.Errorf("compliance: policy %s version record %x: %w", name, k[len(prefix):], err)
			}
			out = append(out, sp)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[name] == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	for t, p := range s.assigned {
		if p == name {
			return fmt.Errorf("%w: %q is assigned to %s %q", ErrInUse, name, t.Kind, t.Name)
		}
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPolicies).Delete([]byte(name))
	}); err != nil {
		return fmt.Errorf("compliance: delete policy %s: %w", name, err)
	}
	delete(s.current, name)
	return nil
}

// Assign makes policyName the policy of target, replacing what was assigned there. The policy
// must exist. Devices are not re-evaluated here (the caller runs Engine.ReevaluateAll).
func (s *PolicyStore) Assign(ctx context.Context, target Target, policyName string) error {
	if err := target.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[policyName] == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, policyName)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAssignments).Put(target.key(), []byte(policyName))
	}); err != nil {
		return fmt.Errorf("compliance: assign policy %s: %w", policyName, err)
	}
	s.assigned[target] = policyName
	return nil
}

// Unassign removes the assignment of target; removing a missing assignment is a no-op.
func (s *PolicyStore) Unassign(ctx context.Context, target Target) error {
	if err := target.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAssignments).Delete(target.key())
	}); err != nil {
		return fmt.Errorf("compliance: unassign %s %q: %w", target.Kind, target.Name, err)
	}
	delete(s.assigned, target)
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
