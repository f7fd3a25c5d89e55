package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
)

// auditRow is an audit entry as the pages show it, with the result of its inclusion proof once
// the person asked for verification.
type auditRow struct {
	audit.Entry
	DetailText string
	Verified   string // "" (not checked), "ok", or why not
	VerifiedOK bool
}

func auditRows(entries []audit.Entry) []auditRow {
	out := make([]auditRow, len(entries))
	for i, e := range entries {
		var parts []string
		for k, v := range e.Details {
			parts = append(parts, k+"="+v)
		}
		slices.Sort(parts)
		out[i] = auditRow{Entry: e, DetailText: strings.Join(parts, " ")}
	}
	return out
}

func auditFilterTarget(target string) audit.Filter { return audit.Filter{Target: target} }

type auditQuery struct {
	Actor, Action, Target string
	Start                 int64
	Limit                 int
}

type auditPage struct {
	Query      auditQuery
	Rows       []auditRow
	Next       string
	Error      string
	Checkpoint string // a fresh checkpoint the person asked for
	ServerKey  string
	// Verification is the outcome of checking the page's entries against a pasted checkpoint.
	Verification string
	VerifyOK     bool
	PastedCP     string
	PastedKey    string
}

func parseAuditQuery(v url.Values) (auditQuery, string) {
	q := auditQuery{Actor: v.Get("actor"), Action: v.Get("action"), Target: v.Get("target"), Limit: 50}
	for _, s := range []string{q.Actor, q.Action, q.Target} {
		if len(s) > 256 {
			return q, "a filter is longer than 256 characters"
		}
	}
	if s := v.Get("start"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, "start must be a whole number of at least 0"
		}
		q.Start = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, "limit must be a whole number of at least 1"
		}
		q.Limit = min(n, maxPage)
	}
	return q, ""
}

func (q auditQuery) filter() audit.Filter {
	return audit.Filter{Actor: q.Actor, Action: q.Action, Target: q.Target}
}

func (q auditQuery) values(start int64) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"actor": q.Actor, "action": q.Action, "target": q.Target} {
		if s != "" {
			v.Set(k, s)
		}
	}
	v.Set("start", strconv.FormatInt(start, 10))
	v.Set("limit", strconv.Itoa(q.Limit))
	return v
}

// load fills p with the page of entries its query selects.
func (c *Console) loadAudit(r *http.Request, p *auditPage) error {
	entries, next, err := c.deps.Audit.List(r.Context(), p.Query.filter(), p.Query.Start, p.Query.Limit)
	if err != nil {
		return err
	}
	p.Rows = auditRows(entries)
	if len(entries) == p.Query.Limit && next > p.Query.Start {
		p.Next = Prefix + "audit?" + p.Query.values(next).Encode()
	}
	p.ServerKey = c.deps.AuditVerifierKey
	return nil
}

// auditPage is GET /console/audit: browse and filter the log.
func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, ss *session) {
	q, bad := parseAuditQuery(r.URL.Query())
	p := auditPage{Query: q, Error: bad}
	if bad != "" {
		c.renderTitled(w, r, http.StatusBadRequest, "audit", "Audit", ss, p)
		return
	}
	if err := c.loadAudit(r, &p); err != nil {
		c.internal(w, r, ss, err)
		return
	}
	c.renderTitled(w, r, http.StatusOK, "audit", "Audit", ss, p)
}

// auditCheckpoint is GET /console/audit/checkpoint: a fresh signed checkpoint to copy and keep
// somewhere the server cannot reach; verifying against it later proves the log was not
// rewritten in between.
func (c *Console) auditCheckpoint(w http.ResponseWriter, r *http.Request, ss *session) {
	q, _ := parseAuditQuery(r.URL.Query())
	p := auditPage{Query: q}
	cp, err := c.deps.Audit.Checkpoint(r.Context())
	if err == nil {
		err = c.loadAudit(r, &p)
	}
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	p.Checkpoint = string(cp)
	c.renderTitled(w, r, http.StatusOK, "audit", "Audit", ss, p)
}

// auditVerify is POST /console/audit/verify: every entry of the page is checked against the
// checkpoint and verifier key the person pasted (not the server's word): the checkpoint's
// signature, then each entry's inclusion proof in its tree, with the audit package's own
// verification. The proven entry must also be the one the page shows.
func (c *Console) auditVerify(w http.ResponseWriter, r *http.Request, ss *session) {
	q, bad := parseAuditQuery(r.PostForm)
	p := auditPage{Query: q, Error: bad, PastedCP: r.PostForm.Get("checkpoint"), PastedKey: strings.TrimSpace(r.PostForm.Get("key"))}
	if bad != "" {
		c.renderTitled(w, r, http.StatusBadRequest, "audit", "Audit", ss, p)
		return
	}
	if err := c.loadAudit(r, &p); err != nil {
		c.internal(w, r, ss, err)
		return
	}
	cpText := []byte(strings.ReplaceAll(p.PastedCP, "\r\n", "\n"))
	verifier, err := audit.NewVerifier(p.PastedKey)
	var cp audit.Checkpoint
	if err == nil {
		cp, err = audit.OpenCheckpoint(cpText, verifier)
	}
	if err != nil {
		p.Verification = "Not verified: " + err.Error()
		c.renderTitled(w, r, http.StatusOK, "audit", "Audit", ss, p)
		return
	}
	failed, covered := 0, 0
	for i := range p.Rows {
		row := &p.Rows[i]
		if row.Index >= cp.N {
			row.Verified = "after the checkpoint (tree of " + strconv.FormatInt(cp.N, 10) + "): not covered"
			continue
		}
		covered++
		proof, err := c.deps.Audit.InclusionProof(r.Context(), row.Index, cp.N)
		var proven audit.Entry
		if err == nil {
			proven, err = audit.VerifyInclusion(cpText, verifier, proof)
		}
		if err == nil && !sameEntry(proven, row.Entry) {
			err = fmt.Errorf("the proven entry differs from the one shown")
		}
		if err != nil {
			failed++
			row.Verified = strings.TrimPrefix(err.Error(), "audit: ")
			continue
		}
		row.Verified, row.VerifiedOK = "ok", true
	}
	p.VerifyOK = failed == 0
	p.Verification = fmt.Sprintf("Checkpoint signed by %s over %d entries, checked at %s: %d of the %d entries shown are in it, %d failed.",
		verifier.Name(), cp.N, c.now().UTC().Format(time.RFC3339), covered-failed, len(p.Rows), failed)
	c.renderTitled(w, r, http.StatusOK, "audit", "Audit", ss, p)
}

func sameEntry(a, b audit.Entry) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
