package console

import (
	"encoding/json"
	"errors"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/policies"
)

const (
	defaultPage = 50
	maxPage     = 200
	// maxScan bounds how many records one page may read when filters the store cannot apply
	// (platform, access, reason, text) are set: the page then ends early with a cursor to go on.
	maxScan = 5000
)

// deviceQuery is the device list's filters: state, group and owner are the store's (the JSON
// API's); platform, access, compliance, reason, last seen and text are applied to the records
// the store pages.
type deviceQuery struct {
	State, Group, Owner      string
	Platform, Access, Reason string
	// Compliance is compliant or noncompliant; Unseen (days) keeps devices not seen for that
	// long (or never).
	Compliance, Unseen string
	unseenDays         int
	Q                  string
	Cursor             string
	Limit              int
}

func (q deviceQuery) storeFilter() inventory.Filter {
	return inventory.Filter{State: inventory.State(q.State), Group: q.Group, Owner: q.Owner}
}

func (q deviceQuery) postFilter() bool {
	return q.Platform != "" || q.Access != "" || q.Reason != "" || q.Q != "" || q.Compliance != "" || q.Unseen != ""
}

// values is q as a query string, cursor excepted.
func (q deviceQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"state": q.State, "group": q.Group, "owner": q.Owner, "platform": q.Platform,
		"access": q.Access, "reason": q.Reason, "q": q.Q, "compliance": q.Compliance, "unseen": q.Unseen} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != defaultPage {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// deviceRow is a device of the list (from its api.Device wire form) with its access answer, its
// cells formatted here: a flat struct of strings keeps a page of rows cheap to render.
type deviceRow struct {
	ID, Label, PlatformOS, Owner, Group, State string
	Allow, Compliant                           bool
	lastSeen                                   time.Time
	Reasons                                    []string
	ReasonText, Seen                           string
	// search is what the text filter matches: ID, UDID, serial, host name and owner.
	search string
}

// writeRowHTML writes a device list row to b. A page holds many rows, and html/template calls
// its escapers through reflection for every value (nine a row) and every action: written here,
// with each value escaped by html.EscapeString (and the link's ID path-escaped first), a whole
// page of rows costs one template action. TestRowHTMLEscapes keeps it honest.
func writeRowHTML(b *strings.Builder, row *deviceRow, tick bool) {
	cell := func(label, v string) {
		b.WriteString(`<td data-label="`)
		b.WriteString(label)
		b.WriteString(`">`)
		b.WriteString(v)
		b.WriteString(`</td>`)
	}
	e := html.EscapeString
	b.WriteString(`<tr>`)
	if tick {
		b.WriteString(`<td data-label="Select"><input type="checkbox" name="device" value="` + e(row.ID) + `" aria-label="Select ` + e(row.Label) + `"></td>`)
	}
	cell("Device", `<a href="`+e(Prefix+"devices/"+url.PathEscape(row.ID))+`">`+e(row.Label)+`</a>`)
	cell("Platform", e(row.PlatformOS))
	cell("Owner", e(row.Owner))
	cell("Group", e(row.Group))
	cell("State", e(row.State))
	if row.Allow {
		cell("Access", `<span class="ok">allowed</span>`)
	} else {
		cell("Access", `<span class="bad">denied</span> <small>`+e(row.ReasonText)+`</small>`)
	}
	cell("Last seen", e(row.Seen))
	b.WriteString(`</tr>`)
}

func newDeviceRow(d *inventory.Device, ans access.Answer, withSearch bool) deviceRow {
	a := httpapi.Device(d)
	row := deviceRow{ID: a.ID, Label: a.ID, PlatformOS: platformLabel(d), Owner: a.Owner, Group: a.Group, State: a.State,
		Allow: ans.Allow, Compliant: ans.Compliant, lastSeen: a.LastSeen, Reasons: ans.ReasonCodes(), Seen: "—"}
	if withSearch {
		row.search = strings.ToLower(strings.Join([]string{a.ID, a.UDID, a.Serial, a.Hostname, a.Owner}, "\x00"))
	}
	switch {
	case a.Hostname != "":
		row.Label = a.Hostname
	case a.Serial != "":
		row.Label = a.Serial
	}
	if a.AgentVersion != "" {
		row.PlatformOS += " · agent " + a.AgentVersion // which laptops run an old agent
	}
	row.ReasonText = strings.Join(row.Reasons, ", ")
	if !a.LastSeen.IsZero() {
		row.Seen = a.LastSeen.UTC().Format("2006-01-02 15:04:05Z")
	}
	return row
}

type devicesPage struct {
	// CanLock and CanAssign offer the bulk actions; Policies are what may be assigned.
	CanLock, CanAssign bool
	Policies           []string
	// CSRF is the session's token, for the bulk form (the table is also rendered alone, for
	// htmx, without the page's frame).
	CSRF   string
	Query  deviceQuery
	States []inventory.State
	// Shown is how many devices the page lists; RowsHTML is their rows, written by writeRowHTML
	// with every value escaped.
	Shown    int
	RowsHTML template.HTML
	Next     string // the next page's URL, empty on the last
	Scanned  int
	Error    string
}

func parseDeviceQuery(r *http.Request) (deviceQuery, string) {
	v := r.URL.Query()
	q := deviceQuery{State: v.Get("state"), Group: v.Get("group"), Owner: v.Get("owner"), Platform: v.Get("platform"),
		Access: v.Get("access"), Reason: v.Get("reason"), Q: strings.TrimSpace(v.Get("q")), Cursor: v.Get("cursor"), Limit: defaultPage,
		Compliance: v.Get("compliance"), Unseen: strings.TrimSpace(v.Get("unseen"))}
	for _, s := range []string{q.State, q.Group, q.Owner, q.Platform, q.Access, q.Reason, q.Q, q.Cursor} {
		if len(s) > 256 {
			return q, "a filter is longer than 256 characters"
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, "limit must be a whole number of at least 1"
		}
		q.Limit = min(n, maxPage)
	}
	if q.State != "" && !inventory.State(q.State).Valid() {
		return q, "unknown state " + q.State
	}
	if q.Compliance != "" && q.Compliance != "compliant" && q.Compliance != "noncompliant" {
		return q, "compliance must be compliant or noncompliant"
	}
	if q.Unseen != "" {
		n, err := strconv.Atoi(q.Unseen)
		if err != nil || n < 1 || n > 3650 {
			return q, "not seen for must be a whole number of days from 1 to 3650"
		}
		q.unseenDays = n
	}
	if q.Access != "" && q.Access != "allowed" && q.Access != "denied" {
		return q, "access must be allowed or denied"
	}
	return q, ""
}

// devices is GET /console/devices: a page of devices through the store's paging (the JSON
// API's), filtered further by what the store cannot filter on.
func (c *Console) devices(w http.ResponseWriter, r *http.Request, ss *session) {
	q, bad := parseDeviceQuery(r)
	t := tokens.FromContext(r.Context())
	page := devicesPage{Query: q, States: inventory.States, Error: bad, CSRF: ss.csrf,
		CanLock: c.may(t, "POST /api/v1/devices/{id}/lock"), CanAssign: c.may(t, "PUT /api/v1/assignments") && c.deps.Policies != nil}
	if page.CanAssign {
		if list, err := c.deps.Policies.List(r.Context()); err == nil {
			for _, sp := range list {
				page.Policies = append(page.Policies, sp.Name)
			}
		}
	}
	status := http.StatusOK
	if bad != "" {
		status = http.StatusBadRequest
	} else {
		if q.Q != "" && q.Cursor == "" {
			// An exact device ID or UDID opens the device.
			if d, err := c.lookup(r, q.Q); err == nil {
				to := Prefix + "devices/" + url.PathEscape(d.ID)
				if r.Header.Get("HX-Request") == "true" {
					w.Header().Set("HX-Location", to) // htmx loads the device page instead of swapping the table
					w.WriteHeader(http.StatusOK)
					return
				}
				http.Redirect(w, r, to, http.StatusSeeOther)
				return
			}
		}
		if err := c.listDevices(r, &page); errors.Is(err, inventory.ErrBadCursor) {
			status, page.Error = http.StatusBadRequest, "invalid cursor: follow the Next link unchanged"
		} else if err != nil {
			c.internal(w, r, ss, err)
			return
		}
	}
	if r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "device-table" {
		c.execute(w, status, "devices", "device-table", page)
		return
	}
	c.renderTitled(w, r, status, "devices", "Devices", ss, page)
}

func (c *Console) listDevices(r *http.Request, page *devicesPage) error {
	q, now := page.Query, c.now()
	cursor := q.Cursor
	var rows strings.Builder
	rows.Grow(q.Limit * 512) // a row is 400-500 bytes
	for {
		want := q.Limit - page.Shown
		devs, next, err := c.deps.Devices.List(r.Context(), q.storeFilter(), cursor, want)
		if err != nil {
			return err
		}
		page.Scanned += len(devs)
		for i := range devs {
			d := &devs[i]
			row := newDeviceRow(d, c.deps.Access.Lookup(d.ID, now), q.Q != "")
			if q.postFilter() && !q.matches(&row, now) {
				continue
			}
			writeRowHTML(&rows, &row, page.CanLock || page.CanAssign)
			page.Shown++
		}
		cursor = next
		if next == "" || page.Shown >= q.Limit || !q.postFilter() || page.Scanned >= maxScan {
			break
		}
	}
	page.RowsHTML = template.HTML(rows.String()) // writeRowHTML escaped every value
	if cursor != "" {
		v := q.values()
		v.Set("cursor", cursor)
		page.Next = Prefix + "devices?" + v.Encode()
	}
	return nil
}

func (q deviceQuery) matches(row *deviceRow, now time.Time) bool {
	if (q.Compliance == "compliant" && !row.Compliant) || (q.Compliance == "noncompliant" && row.Compliant) {
		return false
	}
	if q.unseenDays > 0 && !row.lastSeen.IsZero() && now.Sub(row.lastSeen) < time.Duration(q.unseenDays)*24*time.Hour {
		return false
	}
	if q.Platform != "" {
		platform, os, _ := strings.Cut(row.PlatformOS, "/")
		if platform != q.Platform && os != q.Platform {
			return false
		}
	}
	if (q.Access == "allowed" && !row.Allow) || (q.Access == "denied" && row.Allow) {
		return false
	}
	if q.Reason != "" && !slices.Contains(row.Reasons, q.Reason) {
		return false
	}
	if q.Q != "" && !strings.Contains(row.search, strings.ToLower(q.Q)) {
		return false
	}
	return true
}

// lookup finds a device by Hale ID, UDID or enrollment ID, as the JSON API's {id} does.
func (c *Console) lookup(r *http.Request, id string) (*inventory.Device, error) {
	d, err := c.deps.Devices.Get(r.Context(), id)
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		d, err = c.deps.Devices.GetByEnrollmentID(r.Context(), id)
	}
	return d, err
}

// claimRow is one posture claim: its value, who vouches for it and how old it is.
type claimRow struct {
	Name, Value, Source string
	ObservedAt          time.Time
	Age                 string
}

// timelineRow is one step of a command's life.
type timelineRow struct {
	At                      time.Time
	Command, Type, State    string
	Step, Detail, Requester string
}

type devicePage struct {
	Device      api.Device
	Answer      access.Answer
	Verdict     *policies.Verdict
	Claims      []claimRow
	Timeline    []timelineRow
	ShowCmds    bool
	Audit       []auditRow
	ShowAudit   bool
	CanLock     bool
	CanLostMode bool
	CanWipe     bool
	Confirm     string // what a person types to confirm an action
	// WipeMode is the wipe form's preselected mode: full for company-owned Apple devices,
	// selective for agents and personal devices (what the security service accepts for each).
	WipeMode string
}

// device is GET /console/devices/{id}: identity, access answer, verdict, claims, commands and
// audit entries, and the actions the role may take.
func (c *Console) device(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		c.errorPage(w, r, ss, http.StatusBadRequest, "invalid device id")
		return
	}
	d, err := c.lookup(r, id)
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		c.errorPage(w, r, ss, http.StatusNotFound, "No device "+id+".")
		return
	} else if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	now := c.now()
	t := tokens.FromContext(r.Context())
	p := devicePage{Device: httpapi.Device(d), Answer: c.deps.Access.Lookup(d.ID, now), Confirm: d.ID, WipeMode: "selective",
		CanLock:     c.may(t, "POST /api/v1/devices/{id}/lock"),
		CanLostMode: c.may(t, "POST /api/v1/devices/{id}/lost-mode"),
		CanWipe:     c.may(t, "POST /api/v1/devices/{id}/wipe"),
		ShowCmds:    c.may(t, "GET /api/v1/devices/{id}/commands"),
		ShowAudit:   c.may(t, "GET /api/v1/audit"),
	}
	if d.Platform != inventory.PlatformAgent && !d.UserEnrollment {
		p.WipeMode = "full"
	}
	if v, pos, ok := c.deps.Verdicts.Verdict(d.ID); ok {
		p.Verdict = &v
		p.Claims = claims(pos, now)
	}
	if p.ShowCmds {
		if p.Timeline, err = c.timeline(r, d); err != nil {
			c.internal(w, r, ss, err)
			return
		}
	}
	if p.ShowAudit {
		entries, _, err := c.deps.Audit.List(r.Context(), auditFilterTarget(d.ID), 0, 200)
		if err != nil {
			c.internal(w, r, ss, err)
			return
		}
		p.Audit = auditRows(entries)
	}
	c.renderTitled(w, r, http.StatusOK, "device", "Devices", ss, p)
}

// claims lists every claim of a posture from its wire form: any member with a source and an
// observation time is a claim, so a claim added to policies.Posture shows without change here.
func claims(p *policies.Posture, now time.Time) []claimRow {
	if p == nil {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(b, &members) != nil {
		return nil
	}
	var out []claimRow
	for name, raw := range members {
		var cl struct {
			Value      json.RawMessage     `json:"value"`
			Source     policies.Provenance `json:"source"`
			ObservedAt time.Time           `json:"observed_at"`
		}
		if json.Unmarshal(raw, &cl) != nil || cl.Source == "" || cl.ObservedAt.IsZero() {
			continue
		}
		v := string(cl.Value)
		if len(v) > 300 {
			v = v[:300] + "…"
		}
		out = append(out, claimRow{Name: name, Value: v, Source: string(cl.Source), ObservedAt: cl.ObservedAt,
			Age: now.Sub(cl.ObservedAt).Truncate(time.Second).String()})
	}
	slices.SortFunc(out, func(a, b claimRow) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// timeline lists the device's commands' steps, newest first: queued, pushed, answered (Apple),
// or issued, delivered, finished (agents and Android).
func (c *Console) timeline(r *http.Request, d *inventory.Device) ([]timelineRow, error) {
	var out []timelineRow
	add := func(at time.Time, row timelineRow) {
		if !at.IsZero() {
			row.At = at
			out = append(out, row)
		}
	}
	if d.Platform == inventory.PlatformAgent || d.Platform == inventory.PlatformAndroid {
		cmds, err := c.deps.AgentCommands.List(r.Context(), d.ID)
		if err != nil {
			return nil, err
		}
		for i := range cmds {
			ac := httpapi.AgentCommand(&cmds[i])
			base := timelineRow{Command: ac.ID, Type: ac.Type, State: ac.State, Requester: ac.IssuedBy}
			add(ac.IssuedAt, with(base, "queued", ac.Reason))
			add(ac.DeliveredAt, with(base, "delivered", ""))
			add(ac.FinishedAt, with(base, "finished: "+ac.State, ""))
		}
	} else if d.EnrollmentID != "" {
		recs, err := c.deps.AppleCommands.List(r.Context(), d.EnrollmentID)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			ac := adminapi.AppleCommandView(rec)
			base := timelineRow{Command: ac.CommandID, Type: ac.RequestType, State: ac.State, Requester: ac.RequestedBy}
			add(ac.CreatedAt, with(base, "queued", ""))
			if ac.PushError != "" {
				add(ac.UpdatedAt, with(base, "push failed", ac.PushError))
			}
			add(ac.PushedAt, with(base, "pushed", ""))
			detail := ac.Detail
			for _, e := range ac.ErrorChain {
				detail += " " + e.ErrorDomain + " " + strconv.Itoa(e.ErrorCode) + ": " + e.USEnglishDescription
			}
			add(ac.AnsweredAt, with(base, ac.State, strings.TrimSpace(detail)))
		}
	}
	slices.SortStableFunc(out, func(a, b timelineRow) int { return b.At.Compare(a.At) })
	if len(out) > 200 {
		out = out[:200]
	}
	return out, nil
}

func with(row timelineRow, step, detail string) timelineRow {
	row.Step, row.Detail = step, detail
	return row
}
