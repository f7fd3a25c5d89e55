package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/policies"
)

// The compliance buckets: the policies with their versions and assignments, and each device's
// posture, verdict and verdict history. The layout of each is beside its name.
var (
	BucketCompliancePolicies    = []byte("compliance_policies")        // name → current policyRecord JSON
	BucketCompliancePolicyHist  = []byte("compliance_policy_versions") // name 0x00 version (8 bytes BE) → policyRecord JSON
	BucketCompliancePolicySeq   = []byte("compliance_policy_seq")      // name → last version (8 bytes BE), kept after delete; "\x00generation" → policy generation (8 bytes BE)
	BucketComplianceAssignments = []byte("compliance_assignments")     // kind 0x00 name → policy name
	BucketCompliancePosture     = []byte("compliance_posture")         // device ID → policies.Posture JSON
	BucketComplianceVerdict     = []byte("compliance_verdict")         // device ID → policies.Verdict JSON
	// History is append-only: rows are keyed by a sequence so a fleet-wide pass appends at the
	// end of the tree instead of rewriting pages everywhere; a compact index finds one device's.
	BucketComplianceHistory    = []byte("compliance_history")     // seq (8 bytes BE) → policies.Verdict JSON
	BucketComplianceHistoryIdx = []byte("compliance_history_idx") // device ID 0x00 seq → (empty)
	// BucketApplePolicyDelivery remembers what each Apple device was last sent of its effective
	// policy: device ID → deliveryRecord JSON.
	BucketApplePolicyDelivery = []byte("apple_policy_delivery")
)

// complianceBuckets are the buckets of the policies, postures, verdicts and deliveries.
var complianceBuckets = [][]byte{BucketCompliancePolicies, BucketCompliancePolicyHist, BucketCompliancePolicySeq, BucketComplianceAssignments,
	BucketCompliancePosture, BucketComplianceVerdict, BucketComplianceHistory, BucketComplianceHistoryIdx, BucketApplePolicyDelivery}

// policyRecord is one version of a policy as stored.
type policyRecord struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Source    []byte    `json:"source"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// deliveryRecord is what an Apple device was last sent, as stored.
type deliveryRecord struct {
	Policy      string   `json:"policy"`
	Version     int      `json:"version"`
	Platform    string   `json:"platform"`
	Identifiers []string `json:"identifiers"`
	// DeclarationsToken: empty in records written before declarative management.
	DeclarationsToken string `json:"declarations_token,omitempty"`
}

// Compliance returns the compliance state of this transaction.
func (t *tx) Compliance() compliance.Repository { return &complianceRepo{tx: t.tx} }

// complianceRepo is compliance.Repository on one key-value transaction. It looks each bucket up
// once: a fleet-wide pass writes thousands of verdicts through one repository.
type complianceRepo struct {
	tx      Tx
	buckets map[string]Bucket
}

// bucket returns one of the compliance buckets.
func (r *complianceRepo) bucket(name []byte) (Bucket, error) {
	if b, ok := r.buckets[string(name)]; ok {
		return b, nil
	}
	b, err := bucket(r.tx, name)
	if err != nil {
		return nil, err
	}
	if r.buckets == nil {
		r.buckets = map[string]Bucket{}
	}
	r.buckets[string(name)] = b
	return b, nil
}

func policyVersionKey(name string, v int) []byte {
	k := make([]byte, len(name)+9)
	copy(k, name)
	binary.BigEndian.PutUint64(k[len(name)+1:], uint64(v))
	return k
}

func decodePolicy(v []byte) (*compliance.StoredPolicy, error) {
	var rec policyRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, err
	}
	return &compliance.StoredPolicy{Name: rec.Name, Version: rec.Version, Source: rec.Source, UpdatedAt: rec.UpdatedAt, UpdatedBy: rec.UpdatedBy}, nil
}

// CurrentPolicies returns the current version of every policy.
func (r *complianceRepo) CurrentPolicies(ctx context.Context) ([]*compliance.StoredPolicy, error) {
	b, err := r.bucket(BucketCompliancePolicies)
	if err != nil {
		return nil, err
	}
	var out []*compliance.StoredPolicy
	err = b.ForEach(func(k, v []byte) error {
		sp, err := decodePolicy(v)
		if err != nil {
			return fmt.Errorf("policy %q: %w", k, err)
		}
		out = append(out, sp)
		return nil
	})
	return out, err
}

// LastPolicyVersion returns the last version stored under name.
func (r *complianceRepo) LastPolicyVersion(ctx context.Context, name string) (int, error) {
	b, err := r.bucket(BucketCompliancePolicySeq)
	if err != nil {
		return 0, err
	}
	if v := b.Get([]byte(name)); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v)), nil
	}
	return 0, nil
}

// PutPolicy stores a version and makes it current and last.
func (r *complianceRepo) PutPolicy(ctx context.Context, sp *compliance.StoredPolicy) error {
	enc, err := json.Marshal(policyRecord{Name: sp.Name, Version: sp.Version, Source: sp.Source, UpdatedAt: sp.UpdatedAt, UpdatedBy: sp.UpdatedBy})
	if err != nil {
		return err
	}
	seq, err := r.bucket(BucketCompliancePolicySeq)
	if err != nil {
		return err
	}
	hist, err := r.bucket(BucketCompliancePolicyHist)
	if err != nil {
		return err
	}
	cur, err := r.bucket(BucketCompliancePolicies)
	if err != nil {
		return err
	}
	if err := seq.Put([]byte(sp.Name), binary.BigEndian.AppendUint64(nil, uint64(sp.Version))); err != nil {
		return err
	}
	if err := hist.Put(policyVersionKey(sp.Name, sp.Version), enc); err != nil {
		return err
	}
	return cur.Put([]byte(sp.Name), enc)
}

// policyGenerationKey holds the policy generation in BucketCompliancePolicySeq: it starts with a
// zero byte, which no policy name has (policies.ValidName), and that bucket is only read by
// name, never walked.
var policyGenerationKey = []byte("\x00generation")

// PolicyGeneration returns the count of policy and assignment changes.
func (r *complianceRepo) PolicyGeneration(ctx context.Context) (uint64, error) {
	b, err := r.bucket(BucketCompliancePolicySeq)
	if err != nil {
		return 0, err
	}
	if v := b.Get(policyGenerationKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, nil
}

// NextPolicyGeneration counts one more change and returns the new count.
func (r *complianceRepo) NextPolicyGeneration(ctx context.Context) (uint64, error) {
	g, err := r.PolicyGeneration(ctx)
	if err != nil {
		return 0, err
	}
	b, err := r.bucket(BucketCompliancePolicySeq)
	if err != nil {
		return 0, err
	}
	g++
	return g, b.Put(policyGenerationKey, binary.BigEndian.AppendUint64(nil, g))
}

// DeletePolicy removes the current version of a policy.
func (r *complianceRepo) DeletePolicy(ctx context.Context, name string) error {
	b, err := r.bucket(BucketCompliancePolicies)
	if err != nil {
		return err
	}
	return b.Delete([]byte(name))
}

// PolicyVersion returns one stored version.
func (r *complianceRepo) PolicyVersion(ctx context.Context, name string, version int) (*compliance.StoredPolicy, error) {
	b, err := r.bucket(BucketCompliancePolicyHist)
	if err != nil {
		return nil, err
	}
	v := b.Get(policyVersionKey(name, version))
	if v == nil {
		return nil, fmt.Errorf("%w: %q version %d", compliance.ErrNotFound, name, version)
	}
	return decodePolicy(v)
}

// PolicyVersions returns every stored version of a policy, oldest first.
func (r *complianceRepo) PolicyVersions(ctx context.Context, name string) ([]*compliance.StoredPolicy, error) {
	b, err := r.bucket(BucketCompliancePolicyHist)
	if err != nil {
		return nil, err
	}
	var out []*compliance.StoredPolicy
	prefix := append([]byte(name), 0)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		sp, err := decodePolicy(v)
		if err != nil {
			return nil, fmt.Errorf("compliance: policy %s version record %x: %w", name, k[len(prefix):], err)
		}
		out = append(out, sp)
	}
	return out, nil
}

// Assignments returns every assignment.
func (r *complianceRepo) Assignments(ctx context.Context) ([]compliance.Assignment, error) {
	b, err := r.bucket(BucketComplianceAssignments)
	if err != nil {
		return nil, err
	}
	var out []compliance.Assignment
	err = b.ForEach(func(k, v []byte) error {
		kind, name, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return fmt.Errorf("malformed assignment key %q", k)
		}
		out = append(out, compliance.Assignment{Target: compliance.Target{Kind: string(kind), Name: string(name)}, Policy: string(v)})
		return nil
	})
	return out, err
}

func assignmentKey(t compliance.Target) []byte { return []byte(t.Kind + "\x00" + t.Name) }

// PutAssignment assigns a policy to a target.
func (r *complianceRepo) PutAssignment(ctx context.Context, a compliance.Assignment) error {
	b, err := r.bucket(BucketComplianceAssignments)
	if err != nil {
		return err
	}
	return b.Put(assignmentKey(a.Target), []byte(a.Policy))
}

// DeleteAssignment removes the assignment of a target.
func (r *complianceRepo) DeleteAssignment(ctx context.Context, target compliance.Target) error {
	b, err := r.bucket(BucketComplianceAssignments)
	if err != nil {
		return err
	}
	return b.Delete(assignmentKey(target))
}

// PrefetchDevice reads, in one round trip where the backend can (Prefetcher), what evaluating
// a device reads in a unit of work: its inventory record, posture and verdict, and the policy
// generation. Without it each would be a round trip of its own, all inside the writer lock.
func (r *complianceRepo) PrefetchDevice(ctx context.Context, id string) {
	p, ok := r.tx.(Prefetcher)
	if !ok {
		return
	}
	k := []byte(id)
	p.Prefetch([]BucketKey{{BucketInventoryDevices, k}, {BucketCompliancePosture, k}, {BucketComplianceVerdict, k},
		{BucketCompliancePolicySeq, policyGenerationKey}})
}

// Posture returns a device's stored posture, nil when it has none.
func (r *complianceRepo) Posture(ctx context.Context, id string) (*policies.Posture, error) {
	return getJSON[policies.Posture](r, BucketCompliancePosture, id, "posture")
}

// Verdict returns a device's stored verdict, nil when it has none.
func (r *complianceRepo) Verdict(ctx context.Context, id string) (*policies.Verdict, error) {
	return getJSON[policies.Verdict](r, BucketComplianceVerdict, id, "verdict")
}

// getJSON decodes the record of a device in bucket, nil when there is none.
func getJSON[T any](r *complianceRepo, bucket []byte, id, what string) (*T, error) {
	b, err := r.bucket(bucket)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	x := new(T)
	if err := json.Unmarshal(v, x); err != nil {
		return nil, fmt.Errorf("compliance: decode %s of %s: %w", what, id, err)
	}
	return x, nil
}

// ForEachPosture calls fn with every stored posture.
func (r *complianceRepo) ForEachPosture(ctx context.Context, fn func(string, *policies.Posture) error) error {
	b, err := r.bucket(BucketCompliancePosture)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		p := new(policies.Posture)
		if err := json.Unmarshal(v, p); err != nil {
			return fmt.Errorf("compliance: decode posture of %s: %w", k, err)
		}
		return fn(string(k), p)
	})
}

// ForEachVerdict calls fn with every stored verdict.
func (r *complianceRepo) ForEachVerdict(ctx context.Context, fn func(string, *policies.Verdict) error) error {
	b, err := r.bucket(BucketComplianceVerdict)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		vd := new(policies.Verdict)
		if err := json.Unmarshal(v, vd); err != nil {
			return fmt.Errorf("compliance: decode verdict of %s: %w", k, err)
		}
		return fn(string(k), vd)
	})
}

// PutPosture stores a device's posture.
func (r *complianceRepo) PutPosture(ctx context.Context, deviceID string, p *policies.Posture) error {
	pj, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("compliance: encode posture of %s: %w", deviceID, err)
	}
	b, err := r.bucket(BucketCompliancePosture)
	if err != nil {
		return err
	}
	return b.Put([]byte(deviceID), pj)
}

// PutVerdict stores a device's verdict and, with history, appends a history row.
func (r *complianceRepo) PutVerdict(ctx context.Context, deviceID string, v *policies.Verdict, history bool) error {
	vj, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("compliance: encode verdict of %s: %w", deviceID, err)
	}
	b, err := r.bucket(BucketComplianceVerdict)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(deviceID), vj); err != nil {
		return err
	}
	if !history {
		return nil
	}
	rows, err := r.bucket(BucketComplianceHistory)
	if err != nil {
		return err
	}
	idx, err := r.bucket(BucketComplianceHistoryIdx)
	if err != nil {
		return err
	}
	seq, err := rows.NextSequence()
	if err != nil {
		return err
	}
	key := binary.BigEndian.AppendUint64(nil, seq)
	if err := rows.Put(key, vj); err != nil {
		return err
	}
	return idx.Put(append(append([]byte(deviceID), 0), key...), nil)
}

// History returns up to limit of a device's history rows, oldest first.
func (r *complianceRepo) History(ctx context.Context, deviceID string, limit int) ([]policies.Verdict, error) {
	rows, err := r.bucket(BucketComplianceHistory)
	if err != nil {
		return nil, err
	}
	idx, err := r.bucket(BucketComplianceHistoryIdx)
	if err != nil {
		return nil, err
	}
	prefix := append([]byte(deviceID), 0)
	var out []policies.Verdict
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(out) < limit && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		v := rows.Get(k[len(prefix):])
		if v == nil {
			return nil, fmt.Errorf("compliance: history index of %s points at a missing row", deviceID)
		}
		var vd policies.Verdict
		if err := json.Unmarshal(v, &vd); err != nil {
			return nil, fmt.Errorf("compliance: decode history of %s: %w", deviceID, err)
		}
		out = append(out, vd)
	}
	return out, nil
}

// Delivery returns what was last delivered to a device.
func (r *complianceRepo) Delivery(ctx context.Context, deviceID string) (compliance.Delivery, bool, error) {
	b, err := r.bucket(BucketApplePolicyDelivery)
	if err != nil {
		return compliance.Delivery{}, false, err
	}
	v := b.Get([]byte(deviceID))
	if v == nil {
		return compliance.Delivery{}, false, nil
	}
	var rec deliveryRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return compliance.Delivery{}, false, fmt.Errorf("compliance: decode policy delivery of %s: %w", deviceID, err)
	}
	return compliance.Delivery(rec), true, nil
}

// PutDelivery records what was delivered to a device.
func (r *complianceRepo) PutDelivery(ctx context.Context, deviceID string, d compliance.Delivery) error {
	v, err := json.Marshal(deliveryRecord(d))
	if err != nil {
		return err
	}
	b, err := r.bucket(BucketApplePolicyDelivery)
	if err != nil {
		return err
	}
	return b.Put([]byte(deviceID), v)
}
