package agentapi

import (
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/text"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/policies"
)

// maxReportBody bounds a posture report.
const maxReportBody = 256 << 10

// Nonce answers GET /agent/v1/nonce (device): api.AgentNonce, a single-use nonce for the next
// report.
func (h *Handler) Nonce(w http.ResponseWriter, r *http.Request) {
	nonce, exp := h.Nonces.Issue(httpapi.DeviceFrom(r.Context()).ID)
	httpjson.Write(w, http.StatusOK, api.AgentNonce{Nonce: nonce, ExpiresAt: exp.UTC()})
}

// Report answers POST /agent/v1/report (device): it validates and bounds the api.AgentReport,
// checks its single-use nonce, stores it with provenance agent, re-evaluates the device, and
// answers api.AgentReportAnswer with the next interval and nonce.
func (h *Handler) Report(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	var req api.AgentReport
	if !problem.DecodeJSON(w, r, maxReportBody, &req) {
		return
	}
	now := time.Now().UTC()
	if msg := validateReport(&req, d.OS, now); msg != "" {
		h.Auditor.Record(r, httpapi.Event{Action: "device.report", Target: d.ID, Outcome: audit.OutcomeDenied, Details: map[string]string{"reason": msg}})
		problem.BadRequest(w, r, msg)
		return
	}
	if !h.Nonces.Use(d.ID, req.Nonce) {
		problem.Error(w, r, http.StatusConflict, "nonce-invalid",
			"the report's nonce is unknown, used or expired; fetch one from GET /agent/v1/nonce and resend")
		return
	}
	req.Posture.ReportedAt = now
	if req.AgentVersion != "" && req.AgentVersion != d.AgentVersion {
		// An upgraded agent shows in the inventory with its next report. The version is
		// inventory, not evidence: failing to record it does not refuse the report.
		if _, err := h.Inventory.SetAgentVersion(r.Context(), d.ID, req.AgentVersion); err != nil {
			h.Log.WarnContext(r.Context(), "recording the agent version failed", "device", d.ID, "err", err)
		}
	}
	verdict, err := h.Compliance.IngestAgentReport(r.Context(), d.ID, req.Posture, now)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	interval := DefaultReportInterval
	etag := ""
	var warnBefore time.Duration
	if sp, err := h.Policies.Effective(d); err == nil && sp != nil && sp.Policy != nil {
		interval = sp.Policy.ReportInterval()
		etag = sp.Policy.ForAgent(policies.Platform(d.OS)).ETag()
		if sp.Policy.Grace != nil {
			warnBefore = time.Duration(sp.Policy.Grace.WarnBefore)
		}
	}
	nonce, _ := h.Nonces.Issue(d.ID)
	ans := graceAnswer(verdict, warnBefore, now)
	httpjson.Write(w, http.StatusOK, api.AgentReportAnswer{
		InGrace: ans.InGrace, GraceUntil: ans.GraceUntil, WarnAt: ans.WarnAt, Reasons: ans.Reasons,
		Accepted: true, NextReportIn: interval.String(), Nonce: nonce, PolicyETag: etag, Compliant: verdict.Compliant,
	})
}

// validateReport refuses reports with impossible values: a platform other than the device's,
// claims from the future or claiming a provenance the agent cannot vouch for.
func validateReport(req *api.AgentReport, deviceOS string, now time.Time) string {
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
	case len(req.AgentVersion) > 128 || !text.Printable(req.AgentVersion):
		return "agent_version must be printable text up to 128 bytes"
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

// Policy answers GET /agent/v1/policy (device): the device's effective policy as the agent sees
// it (api.AgentPolicy), with an ETag.
func (h *Handler) Policy(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	sp, err := h.Policies.Effective(d)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if sp == nil || sp.Policy == nil {
		problem.Error(w, r, http.StatusNotFound, "no-policy", "no policy applies to this device yet")
		return
	}
	var ap api.AgentPolicy = sp.Policy.ForAgent(policies.Platform(d.OS))
	etag := ap.ETag()
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	httpjson.Write(w, http.StatusOK, ap)
}

// graceAnswer is what a report's answer tells the agent to warn its user of: the deadline of a
// device in grace, when the policy warns again, and what to fix.
func graceAnswer(v policies.Verdict, warnBefore time.Duration, now time.Time) api.AgentReportAnswer {
	if !v.InGrace(now) {
		return api.AgentReportAnswer{}
	}
	a := api.AgentReportAnswer{InGrace: true, GraceUntil: v.GraceUntil}
	if warnBefore > 0 {
		a.WarnAt = v.GraceUntil.Add(-warnBefore)
	}
	for _, r := range v.Reasons {
		a.Reasons = append(a.Reasons, r.Code)
	}
	return a
}
