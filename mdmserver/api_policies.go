package mdmserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/policies"
)

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

// PUT /api/v1/policies/{name}: a YAML or JSON policy → {name, version, unobservable}. Every
// device is re-evaluated against it before the answer, so a dry-run or access check right after
// sees it.
func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policies.ValidName(name); err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	body, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	sp, err := s.policies.Put(r.Context(), name, body, actor(r))
	if err != nil {
		var ve *policies.ValidationError
		if errors.As(err, &ve) {
			policyProblem(w, r, err)
			return
		}
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "policy.put", Target: name, Details: map[string]string{"version": strconv.Itoa(sp.Version)}})
	s.reevaluate(r.Context())
	httpjson.Write(w, http.StatusOK, map[string]any{"name": sp.Name, "version": sp.Version, "updated_at": sp.UpdatedAt,
		"unobservable": unobservable(sp.Policy)})
}

// reevaluate re-evaluates every device after a policy or assignment change, then delivers the
// new profiles to Apple devices in the background (APNs pushes take their time).
func (s *Server) reevaluate(ctx context.Context) {
	stats, err := s.compliance.ReevaluateAll(context.WithoutCancel(ctx))
	if err != nil {
		s.log.ErrorContext(ctx, "re-evaluation after a policy change failed", "err", err)
	} else {
		s.log.InfoContext(ctx, "re-evaluated devices", "devices", stats.Devices, "changed", stats.Changed, "took", stats.Took)
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.apple.DeliverPolicies(context.WithoutCancel(ctx))
	}()
}

type policyView struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	Source    string    `json:"source,omitempty"`
}

func viewPolicy(sp *compliance.StoredPolicy, withSource bool) policyView {
	v := policyView{Name: sp.Name, Version: sp.Version, UpdatedAt: sp.UpdatedAt, UpdatedBy: sp.UpdatedBy}
	if withSource {
		v.Source = string(sp.Source)
	}
	return v
}

// GET /api/v1/policies/{name}
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	sp, err := s.policies.Get(r.Context(), r.PathValue("name"))
	if errors.Is(err, compliance.ErrNotFound) {
		problem.NotFound(w, r, "no policy "+r.PathValue("name"))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, viewPolicy(sp, true))
}

// GET /api/v1/policies
func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	list, err := s.policies.List(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := make([]policyView, 0, len(list))
	for _, sp := range list {
		out = append(out, viewPolicy(sp, false))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"policies": out, "assignments": s.policies.Assignments()})
}

// DELETE /api/v1/policies/{name}: refused while the policy is assigned.
func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	err := s.policies.Delete(r.Context(), r.PathValue("name"))
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		problem.NotFound(w, r, "no policy "+r.PathValue("name"))
	case errors.Is(err, compliance.ErrInUse):
		problem.Error(w, r, http.StatusConflict, "policy-in-use", "unassign the policy before deleting it")
	case err != nil:
		s.internal(w, r, err)
	default:
		s.record(r, event{Action: "policy.delete", Target: r.PathValue("name")})
		w.WriteHeader(http.StatusNoContent)
	}
}

// PUT /api/v1/assignments: {"target":{"kind":"default|group|device","name":"..."},"policy":"name"}.
func (s *Server) putAssignment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Target compliance.Target `json:"target"`
		Policy string            `json:"policy"`
	}
	if !problem.DecodeJSON(w, r, 4<<10, &req) {
		return
	}
	err := s.policies.Assign(r.Context(), req.Target, req.Policy)
	switch {
	case errors.Is(err, compliance.ErrNotFound):
		problem.NotFound(w, r, "no policy "+req.Policy)
		return
	case err != nil:
		problem.BadRequest(w, r, err.Error())
		return
	}
	s.record(r, event{Action: "policy.assign", Target: req.Policy, Details: map[string]string{"kind": req.Target.Kind, "name": req.Target.Name}})
	s.reevaluate(r.Context())
	httpjson.Write(w, http.StatusOK, map[string]any{"assignments": s.policies.Assignments()})
}

// POST /api/v1/policies/{name}/dry-run[?kind=&target=]: the devices that would be noncompliant if
// the policy in the body (or, with no body, the stored one) were applied, and the policy's
// unobservable rules; nothing changes.
func (s *Server) dryRunPolicy(w http.ResponseWriter, r *http.Request) {
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
		sp, err := s.policies.Get(r.Context(), r.PathValue("name"))
		if errors.Is(err, compliance.ErrNotFound) {
			problem.NotFound(w, r, "no policy "+r.PathValue("name")+"; send one in the body to try it")
			return
		} else if err != nil {
			s.internal(w, r, err)
			return
		}
		p = sp.Policy
	}
	q := r.URL.Query()
	target := compliance.Target{Kind: q.Get("kind"), Name: q.Get("target")}
	if target.Kind == "" {
		target.Kind = "default"
	}
	results, err := s.compliance.DryRun(r.Context(), p, target)
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	if results == nil {
		results = []compliance.DryRunResult{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"policy": p.Name, "noncompliant": results,
		"unobservable": unobservable(p)})
}

// GET /access/v1/devices/{id}: may this device open a session? Answered from memory.
