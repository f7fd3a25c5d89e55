package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/policies"
)

// PolicyStore reads the versioned policies and their assignments (a *compliance.PolicyStore).
type PolicyStore interface {
	List(ctx context.Context) ([]*compliance.StoredPolicy, error)
	Get(ctx context.Context, name string) (*compliance.StoredPolicy, error)
	Versions(ctx context.Context, name string) ([]*compliance.StoredPolicy, error)
	GetVersion(ctx context.Context, name string, version int) (*compliance.StoredPolicy, error)
	Assignments() []compliance.Assignment
}

// PolicyActions applies and assigns policies as the admin API does, on the record and
// re-evaluating every device (an *adminapi.Policies), and dry-runs them (its DryRun).
type PolicyActions interface {
	Apply(r *http.Request, name string, source []byte) (*compliance.StoredPolicy, error)
	AssignTo(r *http.Request, target compliance.Target, policy string) error
	AssignEach(r *http.Request, targets []compliance.Target, policy string) (int, error)
}

// DryRunner evaluates a policy against the devices a target selects without changing anything
// (a *compliance.Engine).
type DryRunner interface {
	DryRun(ctx context.Context, p *policies.Policy, target compliance.Target) ([]compliance.DryRunResult, error)
}

type policiesPage struct {
	Policies    []api.Policy
	Assignments []api.Assignment
	CanEdit     bool
	CanAssign   bool
}

// policyList is GET /console/policies: every policy and assignment; ?open=NAME opens one.
func (c *Console) policyList(w http.ResponseWriter, r *http.Request, ss *session) {
	if name := r.URL.Query().Get("open"); name != "" {
		if policies.ValidName(name) != nil {
			c.errorPage(w, r, ss, http.StatusBadRequest, "invalid policy name "+name)
			return
		}
		http.Redirect(w, r, Prefix+"policies/"+url.PathEscape(name), http.StatusSeeOther)
		return
	}
	list, err := c.deps.Policies.List(r.Context())
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	t := tokens.FromContext(r.Context())
	p := policiesPage{CanEdit: c.may(t, "PUT /api/v1/policies/{name}"), CanAssign: c.may(t, "PUT /api/v1/assignments")}
	for _, sp := range list {
		p.Policies = append(p.Policies, api.Policy{Name: sp.Name, Version: sp.Version, UpdatedAt: sp.UpdatedAt, UpdatedBy: sp.UpdatedBy})
	}
	for _, a := range c.deps.Policies.Assignments() {
		p.Assignments = append(p.Assignments, api.Assignment{Target: api.Target{Kind: a.Target.Kind, Name: a.Target.Name}, Policy: a.Policy})
	}
	c.renderTitled(w, r, http.StatusOK, "policies", "Policies", ss, p)
}

type policyPage struct {
	Name     string
	Exists   bool
	Versions []api.Policy
	Shown    int // the version whose source is shown
	Source   string
	CanEdit  bool
	CanDry   bool
	Problems []policies.Problem
	Applied  string
	// DryRun is the outcome of a dry run: the devices that would fall out of compliance, and
	// the rules no source Hale has can observe (the satisfiability check).
	DryRun       *api.DryRun
	Kind, Target string
}

// policyView is GET /console/policies/{name}[?version=N]: its versions, a version's source and
// the editor.
func (c *Console) policyView(w http.ResponseWriter, r *http.Request, ss *session) {
	p, status := c.loadPolicy(r, r.PathValue("name"))
	if status != http.StatusOK {
		c.errorPage(w, r, ss, status, "No policy "+r.PathValue("name")+".")
		return
	}
	if v := r.URL.Query().Get("version"); v != "" && p.Exists {
		n, err := strconv.Atoi(v)
		sp, gerr := c.deps.Policies.GetVersion(r.Context(), p.Name, n)
		if err != nil || gerr != nil {
			c.errorPage(w, r, ss, http.StatusNotFound, "No version "+v+" of policy "+p.Name+".")
			return
		}
		p.Shown, p.Source = sp.Version, string(sp.Source)
	}
	c.renderTitled(w, r, http.StatusOK, "policy", "Policies", ss, p)
}

// loadPolicy reads policy name for its page: 404 when it does not exist and the caller may not
// create it.
func (c *Console) loadPolicy(r *http.Request, name string) (*policyPage, int) {
	if policies.ValidName(name) != nil {
		return nil, http.StatusNotFound
	}
	t := tokens.FromContext(r.Context())
	p := &policyPage{Name: name, CanEdit: c.may(t, "PUT /api/v1/policies/{name}"), CanDry: c.may(t, "POST /api/v1/policies/{name}/dry-run"),
		Kind: compliance.TargetDefault}
	sp, err := c.deps.Policies.Get(r.Context(), name)
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		if !p.CanEdit {
			return nil, http.StatusNotFound
		}
		return p, http.StatusOK
	case err != nil:
		return nil, http.StatusInternalServerError
	}
	p.Exists, p.Shown, p.Source = true, sp.Version, string(sp.Source)
	if vs, err := c.deps.Policies.Versions(r.Context(), name); err == nil {
		for i := len(vs) - 1; i >= 0; i-- {
			p.Versions = append(p.Versions, api.Policy{Name: vs[i].Name, Version: vs[i].Version, UpdatedAt: vs[i].UpdatedAt, UpdatedBy: vs[i].UpdatedBy})
		}
	}
	return p, http.StatusOK
}

// problemsOf lists a validation error's problems, or the error itself as one.
func problemsOf(err error) []policies.Problem {
	var ve *policies.ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return []policies.Problem{{Message: err.Error()}}
}

// policyApply is POST /console/policies/{name}: the edited YAML becomes the next version (the
// admin API's Apply: on the record, every device re-evaluated); problems are shown on their
// lines, with the text kept.
func (c *Console) policyApply(w http.ResponseWriter, r *http.Request, ss *session) {
	p, status := c.loadPolicy(r, r.PathValue("name"))
	if status != http.StatusOK {
		c.errorPage(w, r, ss, status, "No policy "+r.PathValue("name")+".")
		return
	}
	src := strings.ReplaceAll(r.PostForm.Get("source"), "\r\n", "\n")
	if len(src) > policies.MaxPolicySize {
		c.errorPage(w, r, ss, http.StatusRequestEntityTooLarge, "A policy is at most 256 KiB.")
		return
	}
	sp, err := c.deps.PolicyActions.Apply(r, p.Name, []byte(src))
	if err != nil {
		var ve *policies.ValidationError
		if !errors.As(err, &ve) {
			c.internal(w, r, ss, err)
			return
		}
		p.Source, p.Problems = src, problemsOf(err)
		c.renderTitled(w, r, http.StatusBadRequest, "policy", "Policies", ss, p)
		return
	}
	c.flashAndRedirect(w, r, ss, "ok", "Policy "+sp.Name+" version "+strconv.Itoa(sp.Version)+" applied; every device was re-evaluated.",
		Prefix+"policies/"+url.PathEscape(sp.Name))
}

// policyDryRun is POST /console/policies/{name}/dry-run: the edited YAML is checked (problems
// on their lines), its unobservable rules listed, and the devices the target selects that would
// fall out of compliance shown; nothing changes.
func (c *Console) policyDryRun(w http.ResponseWriter, r *http.Request, ss *session) {
	p, status := c.loadPolicy(r, r.PathValue("name"))
	if status != http.StatusOK {
		c.errorPage(w, r, ss, status, "No policy "+r.PathValue("name")+".")
		return
	}
	p.Source = strings.ReplaceAll(r.PostForm.Get("source"), "\r\n", "\n")
	p.Kind, p.Target = r.PostForm.Get("kind"), r.PostForm.Get("target")
	if p.Kind == "" {
		p.Kind = compliance.TargetDefault
	}
	pol, err := policies.Parse([]byte(p.Source))
	if err != nil {
		p.Problems = problemsOf(err)
		c.renderTitled(w, r, http.StatusBadRequest, "policy", "Policies", ss, p)
		return
	}
	pol.Name = p.Name
	results, err := c.deps.DryRun.DryRun(r.Context(), pol, compliance.Target{Kind: p.Kind, Name: p.Target})
	if err != nil {
		p.Problems = []policies.Problem{{Field: "target", Message: err.Error()}}
		c.renderTitled(w, r, http.StatusBadRequest, "policy", "Policies", ss, p)
		return
	}
	d := &api.DryRun{Policy: p.Name, Unobservable: policies.CheckObservable(pol, nil), NotEnforced: policies.CheckEnforced(pol),
		Conflicts: policies.DataSharingConflicts(pol)}
	for _, x := range results {
		d.Noncompliant = append(d.Noncompliant, api.DryRunDevice{DeviceID: x.DeviceID, Group: x.Group, State: x.State, Reasons: x.Reasons,
			InGrace: x.InGrace, GraceUntil: x.GraceUntil})
	}
	p.DryRun = d
	c.renderTitled(w, r, http.StatusOK, "policy", "Policies", ss, p)
}

// assign is POST /console/assignments: a policy for every device, a group or one device.
func (c *Console) assign(w http.ResponseWriter, r *http.Request, ss *session) {
	back := Prefix + "policies"
	f := r.PostForm
	target := compliance.Target{Kind: f.Get("kind"), Name: strings.TrimSpace(f.Get("name"))}
	err := c.deps.PolicyActions.AssignTo(r, target, f.Get("policy"))
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		c.flashAndRedirect(w, r, ss, "error", "No policy "+f.Get("policy")+".", back)
	case err != nil:
		c.flashAndRedirect(w, r, ss, "error", "Not assigned: "+err.Error(), back)
	default:
		c.flashAndRedirect(w, r, ss, "ok", "Assigned "+f.Get("policy")+" to "+target.Kind+" "+target.Name+"; every device was re-evaluated.", back)
	}
}
