package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/halemdm/hale/policies"
)

// PolicyFile holds the last agent policy fetched from the server, with its ETag.
const PolicyFile = "policy.json"

// agentPolicy is policies.AgentPolicy as decoded from the server, checked before use.
type agentPolicy struct {
	policies.AgentPolicy
}

func (p *agentPolicy) validate() error {
	if p.ReportInterval < 0 || p.ReportMaxAge < 0 {
		return errors.New("the policy has a negative report interval")
	}
	if len(p.ManagedData) > maxManagedData {
		return fmt.Errorf("the policy lists %d managed data paths, more than %d", len(p.ManagedData), maxManagedData)
	}
	for _, d := range p.ManagedData {
		if len(d) > maxPathLen || !validManagedPath(d) {
			return fmt.Errorf("the policy lists a managed data path that is neither absolute nor ~/relative: %q", d)
		}
	}
	return nil
}

// storedPolicy is the policy file: the policy and the ETag it was served with.
type storedPolicy struct {
	ETag   string               `json:"etag"`
	Policy policies.AgentPolicy `json:"policy"`
}

// decodeStoredPolicy parses and checks the policy file.
func decodeStoredPolicy(b []byte) (*storedPolicy, error) {
	sp := new(storedPolicy)
	if err := json.Unmarshal(b, sp); err != nil {
		return nil, fmt.Errorf("the policy file is corrupt: %w", err)
	}
	if err := (&agentPolicy{sp.Policy}).validate(); err != nil {
		return nil, err
	}
	if len(sp.ETag) > 256 {
		return nil, errors.New("the policy file has an oversized ETag")
	}
	return sp, nil
}

// loadPolicy reads the stored policy; a missing or corrupt file is no policy (the server
// sends it again, since the agent's If-None-Match no longer matches).
func (a *Agent) loadPolicy() {
	b, err := a.store.ReadFile(PolicyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	sp, err := func() (*storedPolicy, error) {
		if err != nil {
			return nil, err
		}
		return decodeStoredPolicy(b)
	}()
	if err != nil {
		a.log.Warn("ignoring the stored policy", "err", err)
		return
	}
	a.policy.Store(sp)
}

// refreshPolicy fetches GET /agent/v1/policy when the ETag the server announced differs from
// the one the agent holds.
func (a *Agent) refreshPolicy(ctx context.Context, announced string) error {
	cur := a.policy.Load()
	if announced == "" || (cur != nil && cur.ETag == announced) {
		return nil
	}
	hdr := http.Header{}
	if cur != nil && cur.ETag != "" {
		hdr.Set("If-None-Match", cur.ETag)
	}
	var p agentPolicy
	status, respHdr, err := a.client.exchange(ctx, a.requestTimeout, http.MethodGet, "/agent/v1/policy", nil, &p, hdr)
	if err != nil {
		return fmt.Errorf("fetching the policy: %w", err)
	}
	if status == http.StatusNotModified {
		return nil
	}
	sp := &storedPolicy{ETag: respHdr.Get("ETag"), Policy: p.AgentPolicy}
	if len(sp.ETag) > 256 {
		sp.ETag = ""
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	if err := a.store.WriteFile(PolicyFile, b); err != nil {
		return err
	}
	a.policy.Store(sp)
	a.log.Info("agent policy updated", "policy", p.Policy, "version", p.Version, "etag", sp.ETag)
	return nil
}

// policyInterval is the policy's report interval, or zero.
func (a *Agent) policyInterval() time.Duration {
	if sp := a.policy.Load(); sp != nil {
		return time.Duration(sp.Policy.ReportInterval)
	}
	return 0
}

// policyManagedData is what the policy says a selective wipe removes.
func (a *Agent) policyManagedData() []string {
	if sp := a.policy.Load(); sp != nil {
		return sp.Policy.ManagedData
	}
	return nil
}
