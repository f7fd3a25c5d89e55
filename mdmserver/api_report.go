package mdmserver

import (
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/policies"
)

// maxReportBody bounds a posture report.
const maxReportBody = 256 << 10

// reportRequest is the body of POST /agent/v1/report.
type reportRequest struct {
	Nonce       string            `json:"nonce"`
	Sequence    int64             `json:"sequence"`
	CollectedAt time.Time         `json:"collected_at"`
	Posture     *policies.Posture `json:"posture"`
	Errors      []struct {
		Collector string `json:"collector"`
		Error     string `json:"error"`
	} `json:"errors,omitempty"`
}

// POST /agent/v1/report (mTLS): validate and bound the report, check its single-use nonce,
// store it with provenance agent, re-evaluate the device, and answer with the next interval and
// nonce.
func (s *Server) agentReport(w http.ResponseWriter, r *http.Request) {
	d := deviceFromContext(r.Context())
	var req reportRequest
	if !problem.DecodeJSON(w, r, maxReportBody, &req) {
		return
	}
	now := time.Now().UTC()
	if msg := validateReport(&req, d.OS, now); msg != "" {
		s.record(r, event{Action: "device.report", Target: d.ID, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": msg}})
		problem.BadRequest(w, r, msg)
		return
	}
	if !s.nonces.use(d.ID, req.Nonce) {
		problem.Error(w, r, http.StatusConflict, "nonce-invalid",
			"the report's nonce is unknown, used or expired; fetch one from GET /agent/v1/nonce and resend")
		return
	}
	req.Posture.ReportedAt = now
	verdict, err := s.compliance.IngestAgentReport(r.Context(), d.ID, req.Posture, now)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	interval := defaultReportInterval
	etag := ""
	if sp, err := s.policies.Effective(d); err == nil && sp != nil && sp.Policy != nil {
		interval = sp.Policy.ReportInterval()
		etag = sp.Policy.ForAgent(policies.Platform(d.OS)).ETag()
	}
	nonce, _ := s.nonces.issue(d.ID)
	httpjson.Write(w, http.StatusOK, map[string]any{
		"accepted": true, "next_report_in": interval.String(), "nonce": nonce, "policy_etag": etag,
		"compliant": verdict.Compliant,
	})
}

// validateReport refuses reports with impossible values: a platform other than the device's,
// claims from the future or claiming a provenance the agent cannot vouch for.
func validateReport(req *reportRequest, deviceOS string, now time.Time) string {
	p := req.Posture
	switch {
	case p == nil:
		return "posture is required"
	case req.Nonce == "" || len(req.Nonce) > 128:
		return "nonce is required"
	case deviceOS != "" && string(p.Platform) != deviceOS:
		return fmt.Sprintf("posture platform %q is not the device's (%s)", p.Platform, deviceOS)
	case req.CollectedAt.After(now.Add(5*time.Minute)) || req.CollectedAt.Before(now.Add(-24*time.Hour)):
		return "collected_at is not within the last 24 hours"
	case len(req.Errors) > 64:
		return "at most 64 collector errors"
	}
	v := reflect.ValueOf(p).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() || f.Elem().Kind() != reflect.Struct {
			continue
		}
		claim := f.Elem()
		src, at := claim.FieldByName("Source"), claim.FieldByName("ObservedAt")
		if !src.IsValid() || !at.IsValid() {
			continue
		}
		name := v.Type().Field(i).Name
		if policies.Provenance(src.String()) != policies.ProvenanceAgent {
			return fmt.Sprintf("claim %s: an agent report can only carry provenance agent", name)
		}
		if t := at.Interface().(time.Time); t.After(now.Add(5 * time.Minute)) {
			return fmt.Sprintf("claim %s was observed in the future", name)
		}
	}
	return ""
}

// GET /agent/v1/policy (mTLS): the device's effective policy as the agent sees it, with an ETag.
func (s *Server) agentPolicy(w http.ResponseWriter, r *http.Request) {
	d := deviceFromContext(r.Context())
	sp, err := s.policies.Effective(d)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if sp == nil || sp.Policy == nil {
		problem.Error(w, r, http.StatusNotFound, "no-policy", "no policy applies to this device yet")
		return
	}
	ap := sp.Policy.ForAgent(policies.Platform(d.OS))
	etag := ap.ETag()
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	httpjson.Write(w, http.StatusOK, ap)
}
