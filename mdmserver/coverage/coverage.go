// Package coverage computes the compliance coverage report (GET /api/v1/reports/coverage): per
// platform and group, how many enrolled devices are encrypted, passcode-protected, on a current
// OS and not jailbroken, how many are in grace, stale or denied, and the top reasons for denial.
// It is what an auditor asks for about HIPAA 164.312 and what the console's overview shows.
package coverage

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// Devices walks the inventory; *inventory.Service is one.
type Devices interface {
	ForEach(ctx context.Context, fn func(*inventory.Device) error) error
}

// Decisions answers as the access API does; *access.Index is one. The report counts a device as
// denied exactly when the messaging backend would be told no.
type Decisions interface {
	Lookup(deviceID string, now time.Time) access.Answer
}

// Compute builds the report at now.
func Compute(ctx context.Context, devices Devices, decisions Decisions, now time.Time) (api.CoverageReport, error) {
	type key struct{ platform, group string }
	rows := map[key]*api.CoverageRow{}
	reasons := map[string]int{}
	err := devices.ForEach(ctx, func(d *inventory.Device) error {
		if d.State != inventory.StateActive && d.State != inventory.StateLocked && d.State != inventory.StateLost {
			return nil // wiped, unenrolled, retired: no longer in the fleet
		}
		k := key{d.OS, d.Group}
		if k.platform == "" {
			k.platform = string(d.Platform)
		}
		r := rows[k]
		if r == nil {
			r = &api.CoverageRow{Platform: k.platform, Group: k.group}
			rows[k] = r
		}
		for _, code := range count(r, decisions.Lookup(d.ID, now)) {
			reasons[code]++
		}
		return nil
	})
	if err != nil {
		return api.CoverageReport{}, err
	}
	rep := api.CoverageReport{GeneratedAt: now.UTC(), Rows: []api.CoverageRow{}, TopDenialReasons: []api.ReasonCount{},
		Total: api.CoverageRow{Platform: "all", Group: "all"}}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, *r)
		add(&rep.Total, r)
	}
	slices.SortFunc(rep.Rows, func(a, b api.CoverageRow) int {
		return cmp.Or(cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.Group, b.Group))
	})
	for code, n := range reasons {
		rep.TopDenialReasons = append(rep.TopDenialReasons, api.ReasonCount{Code: code, Devices: n})
	}
	slices.SortFunc(rep.TopDenialReasons, func(a, b api.ReasonCount) int {
		return cmp.Or(cmp.Compare(b.Devices, a.Devices), cmp.Compare(a.Code, b.Code))
	})
	return rep, nil
}

// count adds one device's answer to its row and returns its denial reasons (none when allowed).
func count(r *api.CoverageRow, a access.Answer) []string {
	r.Devices++
	has := func(codes ...string) bool {
		return slices.ContainsFunc(a.Reasons, func(x policies.Reason) bool { return slices.Contains(codes, x.Code) })
	}
	if p := a.Posture; p != nil {
		if isTrue(p.DiskEncrypted) {
			r.Encrypted++
		}
		if isTrue(p.PasscodePresent) || isTrue(p.ScreenLockEnabled) {
			r.Passcode++
		}
		if p.OS != nil && !has(policies.CodeOSTooOld, policies.CodeOSUnknown, policies.CodeOSUnsupported, policies.CodePatchTooOld) {
			r.OSCurrent++
		}
		if p.Jailbroken != nil && !p.Jailbroken.Value {
			r.NotJailbroken++
		}
	}
	if a.Posture == nil || has(policies.CodeNoReport, policies.CodeReportStale, policies.CodeClaimStale) {
		r.Stale++
	}
	if a.InGrace {
		r.InGrace++
	}
	if a.Allow {
		return nil
	}
	r.Denied++
	var codes []string
	for _, x := range a.Reasons {
		if !slices.Contains(codes, x.Code) {
			codes = append(codes, x.Code)
		}
	}
	return codes
}

func isTrue(c *policies.Claim[bool]) bool { return c != nil && c.Value }

// add sums r into total.
func add(total, r *api.CoverageRow) {
	total.Devices += r.Devices
	total.Encrypted += r.Encrypted
	total.Passcode += r.Passcode
	total.OSCurrent += r.OSCurrent
	total.NotJailbroken += r.NotJailbroken
	total.InGrace += r.InGrace
	total.Stale += r.Stale
	total.Denied += r.Denied
}
