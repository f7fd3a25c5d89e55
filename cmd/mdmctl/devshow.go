package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/text"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// deviceView is api.DeviceDetail with its posture kept raw: the table lists every claim the
// server sends, each {value, source, observed_at}, including claims newer than this mdmctl.
// (Its Posture, at the shallower depth, takes the JSON's posture from DeviceDetail's.)
type deviceView struct {
	api.DeviceDetail
	Posture map[string]json.RawMessage `json:"posture"`
}

// showDevice prints one device. With -o json it prints the server's device answer; the table
// adds the access decision and the last wipe, each from its own call, and says so when the
// token may not read one.
func (a *app) showDevice(ctx context.Context, id string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s", id), nil, &raw); err != nil {
		return err
	}
	if a.output == "json" {
		return a.printJSON(raw)
	}
	var d deviceView
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("decoding the device: %w", err)
	}
	var acc posture.Decision
	accErr := c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s/access", d.ID), nil, &acc)
	var cmds struct{ Commands []command }
	cmdErr := c.do(ctx, http.MethodGet, pathf("/api/v1/devices/%s/commands", d.ID), nil, &cmds)

	w := a.stdout
	if err := fields(w, "id", d.ID, "platform", d.Platform, "os", d.OS, "owner", d.Owner, "group", d.Group,
		"state", d.State, "state changed", ts(d.StateChangedAt), "enrolled", ts(d.EnrolledAt),
		"last seen", ts(d.LastSeen), "hostname", d.Hostname, "serial", d.Serial, "udid", d.UDID,
		"enrollment id", d.EnrollmentID, "enrollment type", enrollmentType(d.Device), "certificates", strings.Join(d.CertSerials, ", ")); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if accErr != nil {
		fmt.Fprintf(w, "access: not shown (%s)\n", sanitize(accErr.Error()))
	} else {
		decision := "DENY"
		if acc.Allow {
			decision = "ALLOW"
		}
		state := acc.State
		if state == d.State {
			state = "" // said above; the access state differs only for a wipe's state
		}
		_ = fields(w, "access", decision, "access state", state)
		writeReasons(w, acc.Reasons)
	}
	a.writeVerdict(w, d.Verdict)
	a.writePosture(w, d.Posture)
	if cmdErr == nil {
		if wipe := lastWipe(cmds.Commands); wipe != nil {
			fmt.Fprintln(w)
			kv := []string{"last wipe", wipe.id() + " " + wipe.State, "issued", ts(wipe.issued()), "updated", ts(wipe.updated())}
			if wipe.Result != nil {
				kv = append(kv, "result", wipe.Result.Status, "detail", wipe.Result.Detail)
			}
			if err := fields(w, kv...); err != nil {
				return err
			}
			return writePaths(w, wipe.Result)
		}
	}
	return nil
}

// writeVerdict writes the compliance verdict: compliant or not, the reasons, the grace period.
func (a *app) writeVerdict(w io.Writer, v *policies.Verdict) {
	if v == nil {
		fmt.Fprintln(w, "compliant: not evaluated yet")
		return
	}
	policy := ""
	if v.PolicyName != "" {
		policy = fmt.Sprintf("%s v%d", v.PolicyName, v.PolicyVersion)
	}
	grace := ""
	switch {
	case !v.GraceUntil.IsZero() && a.now().Before(v.GraceUntil):
		grace = ts(v.GraceUntil) + " (in grace, " + v.GraceUntil.Sub(a.now()).Round(time.Second).String() + " left)"
	case !v.GraceUntil.IsZero():
		grace = ts(v.GraceUntil) + " (ended)"
	case !v.Compliant:
		grace = "none: denied while noncompliant"
	}
	_ = fields(w, "compliant", yesNo(v.Compliant), "policy", policy, "evaluated", ts(v.EvaluatedAt),
		"noncompliant since", ts(v.NoncompliantSince), "grace until", grace)
	writeReasons(w, v.Reasons)
}

// writePosture writes every posture claim with its value, source and age.
func (a *app) writePosture(w io.Writer, posture map[string]json.RawMessage) {
	if posture == nil {
		fmt.Fprintln(w, "\nposture: none reported yet")
		return
	}
	var reported time.Time
	_ = json.Unmarshal(posture["reported_at"], &reported)
	fmt.Fprintf(w, "\nposture reported %s (%s ago):\n", ts(reported), a.age(reported))
	names := make([]string, 0, len(posture))
	for k := range posture {
		names = append(names, k)
	}
	slices.Sort(names)
	var rows [][]string
	for _, name := range names {
		var cl policies.Claim[json.RawMessage]
		if json.Unmarshal(posture[name], &cl) != nil || cl.Source == "" {
			continue // platform, reported_at: not claims
		}
		rows = append(rows, []string{name, claimValue(cl.Value), string(cl.Source), ts(cl.ObservedAt), a.age(cl.ObservedAt)})
	}
	_ = table(w, []string{"CLAIM", "VALUE", "SOURCE", "OBSERVED", "AGE"}, rows)
	writeDeclarationErrors(w, posture["declarations"])
}

// writeDeclarationErrors lists the declarations a device on declarative management refused or
// did not activate, with the device's reasons.
func writeDeclarationErrors(w io.Writer, raw json.RawMessage) {
	var cl struct {
		Value []struct {
			Identifier string   `json:"identifier"`
			Active     bool     `json:"active"`
			Valid      string   `json:"valid"`
			Reasons    []string `json:"reasons"`
		} `json:"value"`
	}
	if raw == nil || json.Unmarshal(raw, &cl) != nil {
		return
	}
	var rows [][]string
	for _, d := range cl.Value {
		if d.Valid == "invalid" || !d.Active {
			rows = append(rows, []string{sanitize(d.Identifier), sanitize(d.Valid), yesNo(d.Active), sanitize(strings.Join(d.Reasons, ", "))})
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w, "\ndeclaration errors:")
		_ = table(w, []string{"DECLARATION", "VALID", "ACTIVE", "REASONS"}, rows)
	}
}

// enrollmentType names how an Apple device is enrolled.
func enrollmentType(d api.Device) string {
	switch {
	case d.UserEnrollment:
		return "user (personal device: no erase; a wipe removes the enrollment and managed data)"
	case d.Platform == "apple":
		return "device"
	}
	return ""
}

// age is how long ago t was, to the second.
func (a *app) age(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return a.now().Sub(t).Round(time.Second).String()
}

// maxClaimValue bounds a claim's value in the table; -o json has it whole.
const maxClaimValue = 60

// claimValue shows a claim's value: a string as it is, anything else as compact JSON, cut short.
func claimValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) != nil {
		s = string(v)
	}
	s = text.Clean(s)
	if r := []rune(s); len(r) > maxClaimValue {
		s = string(r[:maxClaimValue-1]) + "…"
	}
	return s
}

// lastWipe returns the newest wipe among a device's commands (agent or Apple), or nil.
func lastWipe(cmds []command) *command {
	var last *command
	for i := range cmds {
		c := &cmds[i]
		if k := c.kind(); (k == "wipe" || k == "EraseDevice") && (last == nil || !c.issued().Before(last.issued())) {
			last = c
		}
	}
	return last
}
