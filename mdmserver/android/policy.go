package android

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// noPolicy names the AMAPI policy of phones no Hale policy covers: status reporting only, so
// that Hale still sees them (and denies them: no policy).
const noPolicy = "none"

// policyID is the AMAPI policy ID for a Hale policy on one kind of phone. Hale policy names are
// letters, digits, "-" and "_", which AMAPI policy IDs accept.
func policyID(sp *compliance.StoredPolicy, workProfile bool) string {
	name := noPolicy
	if sp != nil && sp.Policy != nil {
		name = sp.Name
	}
	if workProfile {
		return "hale-" + name + "-work-profile"
	}
	return "hale-" + name
}

// renderPolicy renders sp as the AMAPI policy for one kind of phone, and the hash that says
// whether the enterprise already has it.
func renderPolicy(sp *compliance.StoredPolicy, workProfile bool) (*androidmanagement.Policy, string, error) {
	p := &policies.Policy{}
	if sp != nil && sp.Policy != nil {
		p = sp.Policy
	}
	doc := policies.RenderAndroid(p, policies.AndroidOptions{WorkProfile: workProfile})
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, "", err
	}
	var out androidmanagement.Policy
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, "", fmt.Errorf("android: rendered policy does not fit the client's Policy: %w", err)
	}
	sum := sha256.Sum256(b)
	return &out, hex.EncodeToString(sum[:]), nil
}

// syncPolicy patches the enterprise's AMAPI policy for sp and one kind of phone when what Hale
// last sent differs, and returns its full name.
func (s *Service) syncPolicy(ctx context.Context, c *androidmanagement.Service, b *Binding, sp *compliance.StoredPolicy, workProfile bool) (string, error) {
	name := b.Enterprise + "/policies/" + policyID(sp, workProfile)
	pol, hash, err := renderPolicy(sp, workProfile)
	if err != nil {
		return "", err
	}
	// The version too: of several servers, another may have patched a later version since
	// this one patched a version whose rendering this one equals.
	if sp != nil {
		hash = fmt.Sprintf("v%d:%s", sp.Version, hash)
	}
	s.mu.Lock()
	same := s.synced[name] == hash
	s.mu.Unlock()
	if same {
		return name, nil
	}
	if _, err := c.Enterprises.Policies.Patch(name, pol).Context(ctx).Do(); err != nil {
		return "", fmt.Errorf("android: patching policy %s: %w", name, err)
	}
	s.mu.Lock()
	s.synced[name] = hash
	s.mu.Unlock()
	return name, nil
}

// ensurePolicy gives a phone the AMAPI policy of its effective Hale policy: the policy is
// patched when the Hale policy changed, and the phone moved to it when it has another.
func (s *Service) ensurePolicy(ctx context.Context, hd *inventory.Device, d *androidmanagement.Device) error {
	c, b, err := s.amapi(ctx)
	if err != nil {
		return err
	}
	sp, err := s.dep.Policies.Effective(hd)
	if err != nil {
		return err
	}
	name, err := s.syncPolicy(ctx, c, b, sp, d.Ownership == "PERSONALLY_OWNED")
	if err != nil {
		return err
	}
	if d.PolicyName == name {
		return nil
	}
	_, err = c.Enterprises.Devices.Patch(d.Name, &androidmanagement.Device{PolicyName: name}).UpdateMask("policyName").Context(ctx).Do()
	return err
}
