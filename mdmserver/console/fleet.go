package console

import (
	"cmp"
	"encoding/csv"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// countRow is one line of a breakdown.
type countRow struct {
	Label string
	N     int
}

// coverageRow is how many of Of devices meet a control.
type coverageRow struct {
	Label string
	N, Of int
}

// fleet is the overview: the fleet by platform and state, compliance coverage over the devices
// that reported, and why the denied are denied.
type fleet struct {
	Total      int
	Reporting  int
	Allowed    int
	Denied     int
	ByPlatform []countRow
	ByState    []countRow
	Coverage   []coverageRow
	TopReasons []countRow
	At         time.Time
}

// osReasons are the verdict reasons that say the OS is not current.
var osReasons = []string{policies.CodeOSTooOld, policies.CodeOSUnknown, policies.CodeOSUnsupported, policies.CodePatchTooOld}

// fleetStats walks the inventory once, with each device's verdict, posture and access answer
// from memory (the same the access API answers).
func (c *Console) fleetStats(r *http.Request) (*fleet, error) {
	now := c.now()
	f := &fleet{At: now}
	platforms, states, reasons := map[string]int{}, map[string]int{}, map[string]int{}
	var enc, pass, osCur, notJB, grace, stale int
	err := c.deps.Devices.ForEach(r.Context(), func(d *inventory.Device) error {
		f.Total++
		platforms[platformLabel(d)]++
		states[string(d.State)]++
		ans := c.deps.Access.Lookup(d.ID, now)
		if ans.Allow {
			f.Allowed++
		} else {
			f.Denied++
			for _, rs := range ans.Reasons {
				reasons[rs.Code]++
			}
		}
		v, p, ok := c.deps.Verdicts.Verdict(d.ID)
		if !ok || p == nil {
			return nil
		}
		f.Reporting++
		if p.DiskEncrypted != nil && p.DiskEncrypted.Value {
			enc++
		}
		if p.PasscodePresent != nil && p.PasscodePresent.Value {
			pass++
		}
		if p.Jailbroken == nil || !p.Jailbroken.Value {
			notJB++
		}
		if !slices.ContainsFunc(v.Reasons, func(r policies.Reason) bool { return slices.Contains(osReasons, r.Code) }) {
			osCur++
		}
		if v.InGrace(now) {
			grace++
		}
		if slices.ContainsFunc(v.Reasons, func(r policies.Reason) bool {
			return r.Code == policies.CodeReportStale || r.Code == policies.CodeClaimStale
		}) {
			stale++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.ByPlatform, f.ByState, f.TopReasons = sortedCounts(platforms), sortedCounts(states), sortedCounts(reasons)
	if len(f.TopReasons) > 10 {
		f.TopReasons = f.TopReasons[:10]
	}
	n := f.Reporting
	f.Coverage = []coverageRow{
		{"Disk encrypted", enc, n}, {"Passcode set", pass, n}, {"OS current", osCur, n},
		{"Not jailbroken", notJB, n}, {"In grace period", grace, n}, {"Stale report", stale, n},
	}
	return f, nil
}

func platformLabel(d *inventory.Device) string {
	if d.OS != "" {
		return string(d.Platform) + "/" + d.OS
	}
	return string(d.Platform)
}

// sortedCounts orders a tally by count, then label.
func sortedCounts(m map[string]int) []countRow {
	out := make([]countRow, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, countRow{k, m[k]})
	}
	slices.SortStableFunc(out, func(a, b countRow) int { return cmp.Compare(b.N, a.N) })
	return out
}

// overview is GET /console/: the fleet at a glance.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	f, err := c.fleetStats(r)
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	c.renderTitled(w, r, http.StatusOK, "overview", "Fleet", ss, f)
}

// fleetCSV is GET /console/fleet.csv: the overview's figures as CSV (section, label, count,
// of, percent).
func (c *Console) fleetCSV(w http.ResponseWriter, r *http.Request, ss *session) {
	f, err := c.fleetStats(r)
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="hale-fleet.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"section", "label", "count", "of", "percent"})
	row := func(section, label string, n, of int) {
		pct := ""
		if of > 0 {
			pct = strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64)
		}
		_ = cw.Write([]string{section, csvSafe(label), strconv.Itoa(n), strconv.Itoa(of), pct})
	}
	row("total", "devices", f.Total, f.Total)
	row("access", "allowed", f.Allowed, f.Total)
	row("access", "denied", f.Denied, f.Total)
	for _, x := range f.ByPlatform {
		row("platform", x.Label, x.N, f.Total)
	}
	for _, x := range f.ByState {
		row("state", x.Label, x.N, f.Total)
	}
	for _, x := range f.Coverage {
		row("coverage", x.Label, x.N, x.Of)
	}
	for _, x := range f.TopReasons {
		row("denial_reason", x.Label, x.N, f.Denied)
	}
	cw.Flush()
}

// csvSafe keeps a cell from being read as a formula by a spreadsheet.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@') {
		return "'" + s
	}
	return s
}

// internal answers an unexpected error: logged with detail, shown without.
func (c *Console) internal(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	c.log.ErrorContext(r.Context(), "console: request failed", "path", r.URL.Path, "err", err)
	c.errorPage(w, r, ss, http.StatusInternalServerError, "Something went wrong on the server; the details are in its log.")
}
