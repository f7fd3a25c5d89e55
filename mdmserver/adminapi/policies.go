package adminapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/policies"
)

// PolicyStore keeps the versioned policies and their assignments (a *compliance.PolicyStore).
type PolicyStore interface {
	Put(ctx context.Context, name string, source []byte, by string) (*compliance.StoredPolicy, error)
	Get(ctx context.Context, name string) (*compliance.StoredPolicy, error)
	List(ctx context.Context) ([]*compliance.StoredPolicy, error)
	Delete(ctx context.Context, name string) error
	Assign(ctx context.Context, target compliance.Target, policyName string) error
	Assignments() []compliance.Assignment
}

// DryRunner evaluates every device a target selects against a policy without changing anything
// (a *compliance.Engine).
type DryRunner interface {
	DryRun(ctx context.Context, p *policies.Policy, target compliance.Target) ([]compliance.DryRunResult, error)
}

// PolicyChanges is told when a policy or an assignment changed, after it committed and before
// the answer: it re-evaluates every device and delivers the new profiles.
type PolicyChanges interface {
	PoliciesChanged(ctx context.Context)
}

// Policies serves /api/v1/policies and /api/v1/assignments.
type Policies struct {
	// Policies keeps the policies and assignments.
	Policies PolicyStore
	// DryRun evaluates a policy without applying it.
	DryRun DryRunner
	// Changed re-evaluates the devices after a change.
	Changed PolicyChanges
	// Auditor records what is applied, assigned and deleted.
	Auditor httpapi.Auditor
	// Log receives internal errors.
	Log *slog.Logger
}

// Put is PUT /api/v1/policies/{name}: a YAML or JSON policy → {name, version, unobservable}.
// Every device is re-evaluated against it before the answer, so a dry run or access check right
// after sees it.
func (h *Policies) Put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policies.ValidName(name); err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	body, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	sp, err := h.Apply(r, name, body)
	if err != nil {
		var ve *policies.ValidationError
		if errors.As(err, &ve) {
			policyProblem(w, r, err)
			return
		}
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.PolicyApplied{Name: sp.Name, Version: sp.Version, UpdatedAt: sp.UpdatedAt,
		Unobservable: unobservable(sp.Policy), NotEnforced: policies.CheckEnforced(sp.Policy)})
}

// Apply stores source as the next version of policy name for the caller of r, puts it on the
// record and re-evaluates every device: PUT /api/v1/policies/{name}, and the console's editor.
// A policy that does not validate is a *policies.ValidationError naming fields and lines.
func (h *Policies) Apply(r *http.Request, name string, source []byte) (*compliance.StoredPolicy, error) {
	sp, err := h.Policies.Put(r.Context(), name, source, httpapi.Actor(r))
	if err != nil {
		return nil, err
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "policy.put", Target: name, Details: map[string]string{"version": strconv.Itoa(sp.Version)}})
	h.Changed.PoliciesChanged(r.Context())
	return sp, nil
}

// AssignTo assigns policy to target for the caller of r, on the record, and re-evaluates every
// device: PUT /api/v1/assignments, and the console's policy page.
func (h *Policies) AssignTo(r *http.Request, target compliance.Target, policy string) error {
	if err := h.Policies.Assign(r.Context(), target, policy); err != nil {
		return err
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "policy.assign", Target: policy, Details: map[string]string{"kind": target.Kind, "name": target.Name}})
	h.Changed.PoliciesChanged(r.Context())
	return nil
}

// Get is GET /api/v1/policies/{name}: the current version with its source.
func (h *Policies) Get(w http.ResponseWriter, r *http.Request) {
	sp, err := h.Policies.Get(r.Context(), r.PathValue("name"))
	if errors.Is(err, compliance.ErrNotFound) {
		problem.NotFound(w, r, "no policy "+r.PathValue("name"))
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	p := policy(sp)
	p.Source = string(sp.Source)
	httpjson.Write(w, http.StatusOK, p)
}

// List is GET /api/v1/policies: every policy (without its source) and every assignment.
func (h *Policies) List(w http.ResponseWriter, r *http.Request) {
	list, err := h.Policies.List(r.Context())
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.Policies{Policies: make([]api.Policy, len(list)), Assignments: assignments(h.Policies.Assignments())}
	for i, sp := range list {
		out.Policies[i] = policy(sp)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Delete is DELETE /api/v1/policies/{name}: refused (409) while the policy is assigned.
func (h *Policies) Delete(w http.ResponseWriter, r *http.Request) {
	err := h.Policies.Delete(r.Context(), r.PathValue("name"))
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		problem.NotFound(w, r, "no policy "+r.PathValue("name"))
	case errors.Is(err, compliance.ErrInUse):
		problem.Error(w, r, http.StatusConflict, "policy-in-use", "unassign the policy before deleting it")
	case err != nil:
		httpapi.Internal(h.Log, w, r, err)
	default:
		_ = h.Auditor.Record(r, httpapi.Event{Action: "policy.delete", Target: r.PathValue("name")})
		w.WriteHeader(http.StatusNoContent)
	}
}

// Assign is PUT /api/v1/assignments: {"target":{"kind":"default|group|device","name":"..."},
// "policy":"name"} → every assignment. Every device is re-evaluated before the answer.
func (h *Policies) Assign(w http.ResponseWriter, r *http.Request) {
	var req api.Assignment
	if !problem.DecodeJSON(w, r, 4<<10, &req) {
		return
	}
	err := h.AssignTo(r, compliance.Target{Kind: req.Target.Kind, Name: req.Target.Name}, req.Policy)
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		problem.NotFound(w, r, "no policy "+req.Policy)
		return
	case err != nil:
		problem.BadRequest(w, r, err.Error())
		return
	}
	httpjson.Write(w, http.StatusOK, api.Assignments{Assignments: assignments(h.Policies.Assignments())})
}

// DryRunPolicy is POST /api/v1/policies/{name}/dry-run[?kind=&target=]: the devices that would be
// noncompliant if the policy in the body (or, with no body, the stored one) were applied, and the
// policy's unobservable rules; nothing changes.
func (h *Policies) DryRunPolicy(w http.ResponseWriter, r *http.Request) {
	body, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	var p *policies.Policy
	if len(body) > 0 {
		var err error
		if p, err = policies.Parse(body); err != nil {
			policyProblem(w, r, err)
			return
		}
		p.Name = r.PathValue("name")
	} else {
		sp, err := h.Policies.Get(r.Context(), r.PathValue("name"))
		if errors.Is(err, compliance.ErrNotFound) {
			problem.NotFound(w, r, "no policy "+r.PathValue("name")+"; send one in the body to try it")
			return
		} else if err != nil {
			httpapi.Internal(h.Log, w, r, err)
			return
		}
		p = sp.Policy
	}
	q := r.URL.Query()
	target := compliance.Target{Kind: q.Get("kind"), Name: q.Get("target")}
	if target.Kind == "" {
		target.Kind = compliance.TargetDefault
	}
	results, err := h.DryRun.DryRun(r.Context(), p, target)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	out := api.DryRun{Policy: p.Name, Noncompliant: make([]api.DryRunDevice, len(results)), Unobservable: unobservable(p),
		NotEnforced: policies.CheckEnforced(p), Conflicts: policies.DataSharingConflicts(p)}
	if out.Conflicts == nil {
		out.Conflicts = []string{}
	}
	for i, d := range results {
		out.Noncompliant[i] = api.DryRunDevice{DeviceID: d.DeviceID, Group: d.Group, State: d.State, Reasons: d.Reasons,
			InGrace: d.InGrace, GraceUntil: d.GraceUntil}
	}
	httpjson.Write(w, http.StatusOK, out)
}

// readPolicyBody reads a YAML or JSON policy document, bounded.
func readPolicyBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policies.MaxPolicySize))
	if err != nil {
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "body-too-large", "a policy is at most 256 KiB")
		return nil, false
	}
	return body, true
}

// policyProblem answers a policy that does not validate, naming every field and line.
func policyProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := problem.New(http.StatusBadRequest, "invalid-policy", err.Error())
	var ve *policies.ValidationError
	if errors.As(err, &ve) {
		p.Detail = "the policy does not validate; see errors"
		for _, pr := range ve.Problems {
			p.Errors = append(p.Errors, problem.FieldError{Field: pr.Field, Line: pr.Line, Message: pr.Message})
		}
	}
	problem.Write(w, r, p)
}

// unobservable is the satisfiability report of a policy: the rules no source Hale has can
// observe on some platforms. Such a policy is still applied (it may be meant for other
// platforms), but devices there can never meet those rules; answers carry the list, never null.
func unobservable(p *policies.Policy) []policies.UnobservableRule {
	if u := policies.CheckObservable(p, nil); u != nil {
		return u
	}
	return []policies.UnobservableRule{}
}

// policy is the wire form of a stored policy, without its source.
func policy(sp *compliance.StoredPolicy) api.Policy {
	return api.Policy{Name: sp.Name, Version: sp.Version, UpdatedAt: sp.UpdatedAt, UpdatedBy: sp.UpdatedBy}
}

// assignments is the wire form of the assignments, never null.
func assignments(list []compliance.Assignment) []api.Assignment {
	out := make([]api.Assignment, len(list))
	for i, a := range list {
		out[i] = api.Assignment{Target: api.Target{Kind: a.Target.Kind, Name: a.Target.Name}, Policy: a.Policy}
	}
	return out
}
