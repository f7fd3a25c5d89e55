package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// drillReason marks a lock as a lost-device drill on the record (the same words as mdmctl drill).
const drillReason = "lost-device drill"

// drillStep is one step of a drill's report, read from the records.
type drillStep struct {
	Title, Result, Detail string
	At                    time.Time
	After                 string // since the lock was ordered
	Evidence              []auditRow
}

type drillPage struct {
	Device  api.Device
	Ordered *audit.Entry
	Steps   []drillStep
	CanRun  bool
}

// drillRun is POST /console/devices/{id}/drill: the drill's lock, ordered through the security
// service as any lock (typed confirmation; the reason marks it as a drill), then its report.
func (c *Console) drillRun(w http.ResponseWriter, r *http.Request, ss *session) {
	d, err := c.lookup(r, r.PathValue("id"))
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		c.errorPage(w, r, ss, http.StatusNotFound, "No device "+r.PathValue("id")+".")
		return
	} else if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	report := Prefix + "devices/" + url.PathEscape(d.ID) + "/drill"
	if strings.TrimSpace(r.PostForm.Get("confirm")) != d.ID {
		c.flashAndRedirect(w, r, ss, "error", "Not done: type the device ID "+d.ID+" exactly to lock it for the drill.", report)
		return
	}
	_, err = c.deps.Security.Order(r.Context(), adminapi.ActorOf(r), d.ID, security.Lock, api.SecurityRequest{Reason: drillReason}, idempotency.Key{})
	if err != nil {
		if !isRefusal(err) {
			c.internal(w, r, ss, err)
			return
		}
		c.flashAndRedirect(w, r, ss, "error", "Refused: "+refusalText(err), report)
		return
	}
	c.flashAndRedirect(w, r, ss, "ok", "Drill started: the lock is ordered. Reload this report to follow it.", report)
}

// drillReport is GET /console/devices/{id}/drill: the latest drill on the device, step by step
// from the records: the lock ordered, acknowledged by the device, the access API denying it, the
// revocation event sent, and the drill's audit entries proved included in a fresh signed
// checkpoint (the server's key; the audit page verifies against a key you keep).
func (c *Console) drillReport(w http.ResponseWriter, r *http.Request, ss *session) {
	d, err := c.lookup(r, r.PathValue("id"))
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		c.errorPage(w, r, ss, http.StatusNotFound, "No device "+r.PathValue("id")+".")
		return
	} else if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	p := drillPage{Device: httpapi.Device(d), CanRun: c.may(tokens.FromContext(r.Context()), "POST /api/v1/devices/{id}/lock")}
	locks, _, err := c.deps.Audit.List(r.Context(), audit.Filter{Target: d.ID, Action: "device.lock"}, 0, 1000)
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	for i := len(locks) - 1; i >= 0; i-- {
		if locks[i].Details["reason"] == drillReason && locks[i].Outcome == audit.OutcomeOK {
			p.Ordered = &locks[i]
			break
		}
	}
	if p.Ordered != nil {
		if p.Steps, err = c.drillSteps(r, d, p.Ordered); err != nil {
			c.internal(w, r, ss, err)
			return
		}
	}
	c.renderTitled(w, r, http.StatusOK, "drill", "Devices", ss, p)
}

func (c *Console) drillSteps(r *http.Request, d *inventory.Device, ordered *audit.Entry) ([]drillStep, error) {
	since := func(t time.Time) string { return t.Sub(ordered.Time).Round(time.Millisecond).String() }
	cmdID := ordered.Details["command_id"]
	steps := []drillStep{{Title: "Lock the device", Result: "pass", At: ordered.Time, After: "0s",
		Detail: "ordered by " + ordered.Person + " (" + ordered.Actor + "), command " + cmdID, Evidence: auditRows([]audit.Entry{*ordered})}}

	ack := drillStep{Title: "The device acknowledges the lock", Result: "waiting", Detail: "the device has not answered yet"}
	rows, err := c.timeline(r, d)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		if row.Command != cmdID {
			continue
		}
		switch row.State {
		case "acknowledged":
			if row.Step == "acknowledged" || row.Step == "finished: acknowledged" {
				ack.Result, ack.At, ack.After, ack.Detail = "pass", row.At, since(row.At), row.Type+" acknowledged"
			}
		case "error", "partial", "expired", "cancelled":
			ack.Result, ack.Detail = "fail", row.Type+" ended "+row.State+" "+row.Detail
		}
	}
	steps = append(steps, ack)

	ans := c.deps.Access.Lookup(d.ID, c.now())
	deny := drillStep{Title: "The access API denies the device", Result: "fail", Detail: "the access API allows the device"}
	if !ans.Allow {
		deny.Result, deny.Detail = "pass", "denied now: "+strings.Join(ans.ReasonCodes(), ", ")
	}
	steps = append(steps, deny)

	after, _, err := c.deps.Audit.List(r.Context(), audit.Filter{Target: d.ID, Action: "access.revoked"}, ordered.Index, 100)
	if err != nil {
		return nil, err
	}
	rev := drillStep{Title: "A revocation event went out (access.revoked)", Result: "waiting", Detail: "no access.revoked entry yet"}
	if len(after) > 0 {
		e := after[0]
		rev.At, rev.After, rev.Evidence = e.Time, since(e.Time), auditRows(after[:1])
		if e.Details["streams"] == "0" {
			rev.Result, rev.Detail = "fail", "sent on no event stream: no messaging backend was told (create one: mdmctl events create)"
		} else {
			rev.Result, rev.Detail = "pass", "sent on "+e.Details["streams"]+" event stream(s)"
		}
	}
	steps = append(steps, rev)

	proof := drillStep{Title: "The drill's audit entries are in the signed log", Result: "pass"}
	evidence := append([]audit.Entry{*ordered}, after...)
	cp, err := c.deps.Audit.Checkpoint(r.Context())
	if err != nil {
		return nil, err
	}
	v, err := audit.NewVerifier(c.deps.AuditVerifierKey)
	if err != nil {
		return nil, err
	}
	opened, err := audit.OpenCheckpoint(cp, v)
	if err != nil {
		return nil, err
	}
	for _, e := range evidence {
		p, err := c.deps.Audit.InclusionProof(r.Context(), e.Index, opened.N)
		if err == nil {
			_, err = audit.VerifyInclusion(cp, v, p)
		}
		if err != nil {
			proof.Result, proof.Detail = "fail", fmt.Sprintf("entry %d: %v", e.Index, err)
			break
		}
	}
	if proof.Result == "pass" {
		proof.Detail = fmt.Sprintf("%d entries proved in a checkpoint of %d entries signed by %s (the server's key; verify with yours on the Audit page)",
			len(evidence), opened.N, v.Name())
	}
	return append(steps, proof), nil
}
