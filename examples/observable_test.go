package examples_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/halemdm/hale/policies"
)

// reportable keeps of pos only the facts a source reports for a device of enrollment on its
// platform: what the server can really know.
func reportable(t *testing.T, p *policies.Policy, pos *policies.Posture, enrollment string) *policies.Posture {
	t.Helper()
	keep := map[string]bool{"platform": true, "reported_at": true}
	sources := policies.Sources
	if p.Integrity != nil && p.Integrity.RequireAppAttestation {
		// The check counts the messaging app where the policy requires it; so does this.
		sources = append(slices.Clip(sources), policies.MessagingApp)
	}
	for _, s := range sources {
		if s.Enrollment == "" || s.Enrollment == enrollment {
			for _, c := range s.Claims[pos.Platform] {
				keep[c] = true
			}
		}
	}
	b, _ := json.Marshal(pos)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	maps.DeleteFunc(m, func(k string, _ json.RawMessage) bool { return !keep[k] })
	b, _ = json.Marshal(m)
	out := new(policies.Posture)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The satisfiability check on the examples as shipped: where it reports nothing, a device that
// reports only what its sources can is compliant; where it reports rules, such a device never
// is. Where it reports rules is pinned here, so a new gap (or a new source that closes one) is
// a deliberate change. Above all: nothing on an iPhone or iPad.
func TestExamplePoliciesObservable(t *testing.T) {
	gaps := map[string][]string{
		"hipaa":       {"agent:macos", "agent:windows", "apple:macos"},
		"byod":        {"agent:macos", "agent:windows", "apple:macos"},
		"ward-tablet": {"agent:macos", "apple:macos"},
	}
	for _, ex := range examplesList() {
		p := loadPolicy(t, ex.file, ex.name)
		var got []string
		for _, u := range policies.CheckObservable(p, nil) {
			for _, pl := range u.Platforms {
				if k := u.Enrollment + ":" + string(pl); !slices.Contains(got, k) {
					got = append(got, k)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, gaps[ex.name]) {
			t.Errorf("%s: rules nothing observes on %v, want %v", ex.name, got, gaps[ex.name])
		}
		for _, s := range policies.Sources {
			for _, pl := range ex.targets {
				if _, covered := s.Claims[pl]; !covered || s.Enrollment == "" {
					continue
				}
				pos := reportable(t, p, compliantPosture(p, pl), s.Enrollment)
				v := policies.Evaluate(p, pos, nil, now)
				if slices.Contains(got, s.Enrollment+":"+string(pl)) {
					if v.Compliant {
						t.Errorf("%s on %s enrolled as %s: compliant, yet the check says it cannot be", ex.name, pl, s.Enrollment)
					}
				} else if !v.Compliant {
					t.Errorf("%s on %s enrolled as %s: what the sources report is judged %v", ex.name, pl, s.Enrollment, v.Reasons)
				}
			}
		}
	}
}
