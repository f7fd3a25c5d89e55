// Package access answers the messaging backend's question "may this device open a session?"
// from an in-memory index of every device's decision, and keeps that index current.
//
// The index never touches the disk on the read path. A decision is stored with the instant it
// stops holding (the report goes stale, the grace period ends), so an answer is correct at the
// moment it is read even if no re-evaluation has run since: a silent device is denied the moment
// its last report expires, not when a timer next fires.
package access

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// Reason codes the access API answers with, beyond the policy's own compliance reasons. They
// are the public SDK's (package posture), so server and backends share one list.
const (
	ReasonUnknownDevice   = posture.ReasonUnknownDevice
	ReasonIndexNotLoaded  = posture.ReasonIndexNotLoaded
	ReasonIndexStale      = posture.ReasonIndexStale
	ReasonInternalError   = posture.ReasonInternalError
	ReasonReportStale     = posture.ReasonReportStale
	ReasonNoReport        = posture.ReasonNoReport
	ReasonGraceExpired    = posture.ReasonGraceExpired
	ReasonLocked          = posture.ReasonLocked
	ReasonLost            = posture.ReasonLost
	ReasonWiped           = posture.ReasonWiped
	ReasonWipePending     = posture.ReasonWipePending
	ReasonWipeIncomplete  = posture.ReasonWipeIncomplete
	ReasonUnenrolled      = posture.ReasonUnenrolled
	ReasonRetired         = posture.ReasonRetired
	ReasonCertRevoked     = posture.ReasonCertRevoked
	ReasonInvalidDeviceID = posture.ReasonInvalidDeviceID
	ReasonInvalidSubject  = posture.ReasonInvalidSubject
	ReasonUnknownCert     = posture.ReasonUnknownCert
	ReasonInvalidToken    = posture.ReasonInvalidToken
)

// Decision is what the index knows about one device: the last verdict, the device's
// administrative state, and the instants at which the verdict stops holding.
type Decision struct {
	DeviceID string
	// State is the inventory state (active, locked, lost, wiped, unenrolled, retired) or a
	// wipe's state that already denies (wipe_pending, wipe_incomplete).
	State   string
	Verdict policies.Verdict
	// ReportedAt is when the newest posture report arrived; StaleAt is when it stops counting.
	// A zero ReportedAt means the device never reported.
	ReportedAt time.Time
	StaleAt    time.Time
	Posture    *policies.Posture
	// CertSerials are the device's current certificate serials (hex), for lookups by certificate.
	CertSerials []string
	// CertSHA256 are the same certificates' SHA-256 fingerprints (lower-case hex).
	CertSHA256 []string
	// BreakGlass is the emergency access use in force, if any (the index keeps it apart from
	// what the compliance engine puts: see Index.SetBreakGlass).
	BreakGlass *Grant
}

// Answer is the JSON body of GET /access/v1/devices/{id} (DESIGN.md's access contract).
type Answer struct {
	DeviceID          string            `json:"device_id"`
	Allow             bool              `json:"allow"`
	Reasons           []policies.Reason `json:"reasons"`
	Compliant         bool              `json:"compliant"`
	InGrace           bool              `json:"in_grace"`
	State             string            `json:"state,omitempty"`
	EvaluatedAt       time.Time         `json:"evaluated_at,omitzero"`
	NoncompliantSince time.Time         `json:"noncompliant_since,omitzero"`
	GraceUntil        time.Time         `json:"grace_until,omitzero"`
	ReportedAt        time.Time         `json:"reported_at,omitzero"`
	Posture           *policies.Posture `json:"posture,omitempty"`
	// BreakGlass is set when an emergency access use is what allows the device.
	BreakGlass *posture.BreakGlass `json:"break_glass,omitempty"`
	// Remediation is what the device's user reads for each reason, when asked for.
	Remediation []remediation.Item `json:"remediation,omitempty"`
}

// Answer evaluates d at now. It is pure and cheap: no I/O, no locks.
func (d *Decision) Answer(now time.Time) Answer {
	a := Answer{
		DeviceID: d.DeviceID, State: d.State, Compliant: d.Verdict.Compliant,
		EvaluatedAt: d.Verdict.EvaluatedAt, NoncompliantSince: d.Verdict.NoncompliantSince,
		GraceUntil: d.Verdict.GraceUntil, ReportedAt: d.ReportedAt, Posture: d.Posture,
	}
	deny := func(code, detail string) { a.Reasons = append(a.Reasons, policies.Reason{Code: code, Detail: detail}) }
	switch d.State {
	case "", "active":
	case "locked":
		deny(ReasonLocked, "the device was locked by the security team")
	case "lost":
		deny(ReasonLost, "the device is in lost mode")
	case "wiped":
		deny(ReasonWiped, "the device was wiped")
	case "wipe_pending":
		deny(ReasonWipePending, "a wipe was ordered for this device")
	case "wipe_incomplete":
		deny(ReasonWipeIncomplete, "the last wipe left managed data on the device; order a new wipe or unenroll it")
	case "unenrolled":
		deny(ReasonUnenrolled, "the device was unenrolled")
	case "retired":
		deny(ReasonRetired, "the device was retired")
	default:
		deny(d.State, "the device is in state "+d.State)
	}
	switch {
	case d.ReportedAt.IsZero():
		deny(ReasonNoReport, "the device has not reported its posture yet")
	case !now.Before(d.StaleAt):
		deny(ReasonReportStale, "the last posture report is older than the policy's maximum report age")
	}
	if !d.Verdict.Compliant {
		a.InGrace = d.Verdict.InGrace(now)
		if !a.InGrace {
			if !d.Verdict.GraceUntil.IsZero() {
				deny(ReasonGraceExpired, "noncompliant past the grace period")
			}
			a.Reasons = append(a.Reasons, d.Verdict.Reasons...)
		}
	}
	a.Allow = len(a.Reasons) == 0
	if !a.Allow && d.BreakGlass != nil {
		a.Allow, a.BreakGlass = d.BreakGlass.lets(a.Reasons, now)
	}
	if a.InGrace && a.Allow && a.BreakGlass == nil {
		// Allowed, but the backend should know why it may soon not be.
		a.Reasons = append(a.Reasons, d.Verdict.Reasons...)
	}
	if a.Reasons == nil {
		a.Reasons = []policies.Reason{}
	}
	return a
}

// DenyAnswer is the answer for a device the index cannot vouch for.
func DenyAnswer(deviceID, code, detail string) Answer {
	return Answer{DeviceID: deviceID, Reasons: []policies.Reason{{Code: code, Detail: detail}}}
}

// entry caches a decision's encoded answers: one valid before the decision's next deadline, and
// the evaluation after it is recomputed on first use.
type entry struct {
	d        *Decision
	deadline time.Time // the earliest instant the answer may change without a write
	body     []byte    // JSON of d.Answer at any instant before deadline
	allow    bool
	// posture is d.Posture encoded. Postures are never changed once published (a report makes
	// a new one), so a re-evaluation that keeps the posture reuses these bytes: the posture is
	// most of an answer, and a fleet-wide policy change would otherwise re-encode every one.
	posture json.RawMessage
}

// answerJSON is Answer with the posture already encoded; it marshals to the same JSON.
type answerJSON struct {
	Answer
	Posture json.RawMessage `json:"posture,omitempty"`
}

// deadline returns the first instant after which d's answer may differ from its answer at now.
func deadline(d *Decision, now time.Time) time.Time {
	t := time.Time{}
	consider := func(x time.Time) {
		if !x.IsZero() && x.After(now) && (t.IsZero() || x.Before(t)) {
			t = x
		}
	}
	consider(d.StaleAt)
	consider(d.Verdict.GraceUntil)
	if d.BreakGlass != nil {
		consider(d.BreakGlass.ExpiresAt)
	}
	if t.IsZero() {
		return time.Unix(1<<62, 0) // nothing scheduled: the answer holds until the next write
	}
	return t
}

// Index is the in-memory decision index. The zero value is not loaded: every lookup denies with
// index_not_loaded until MarkLoaded.
type Index struct {
	mu       sync.RWMutex
	entries  map[string]*entry
	grants   map[string]*Grant // device ID -> emergency access use in force
	bySerial map[string]string
	bySHA256 map[string]string
	loaded   atomic.Bool
	now      func() time.Time // the time WriteAnswer answers at

	// changedAt and loadedAt are the wall-clock instants (Unix nanoseconds) of the last change
	// (a decision put or deleted, the full load) and of the full load: the index's age.
	changedAt atomic.Int64
	loadedAt  atomic.Int64
	// freshUntil (Unix nanoseconds, wall clock), when set, is when the index stops answering:
	// a replica's copy of a shared database is only as good as its last catch-up (SetFreshUntil).
	freshUntil atomic.Int64
}

// IndexOption configures an Index.
type IndexOption func(*Index)

// WithClock sets the clock WriteAnswer judges grace and staleness by (default time.Now). Give
// it the clock of the engine that fills the index, so both agree on when grace ends.
func WithClock(now func() time.Time) IndexOption { return func(x *Index) { x.now = now } }

// NewIndex returns an empty index, not yet loaded.
func NewIndex(opts ...IndexOption) *Index {
	x := &Index{entries: make(map[string]*entry), bySerial: make(map[string]string), bySHA256: make(map[string]string),
		grants: make(map[string]*Grant), now: time.Now}
	for _, o := range opts {
		o(x)
	}
	return x
}

// Put replaces a device's decision. Callers put a decision only after it was committed.
func (x *Index) Put(d *Decision, now time.Time) {
	x.mu.RLock()
	prev := x.entries[d.DeviceID]
	g := x.grants[d.DeviceID]
	x.mu.RUnlock()
	if g != d.BreakGlass {
		dd := *d
		dd.BreakGlass = g
		d = &dd
	}
	e := newEntry(d, now, prev)
	x.mu.Lock()
	if g := x.grants[d.DeviceID]; g != d.BreakGlass {
		// SetBreakGlass ran meanwhile: encode again with its grant (rare, so under the lock).
		dd := *d
		dd.BreakGlass = g
		d = &dd
		e = newEntry(d, now, prev)
	}
	x.unindexCerts(x.entries[d.DeviceID])
	x.entries[d.DeviceID] = e
	for _, s := range d.CertSerials {
		x.bySerial[s] = d.DeviceID
	}
	for _, fp := range d.CertSHA256 {
		x.bySHA256[fp] = d.DeviceID
	}
	x.mu.Unlock()
	x.changedAt.Store(time.Now().UnixNano())
}

// newEntry encodes d's answer at now. prev, when not nil, is the entry d replaces: its encoded
// posture is reused when the posture is the same.
func newEntry(d *Decision, now time.Time, prev *entry) *entry {
	var posture json.RawMessage
	switch {
	case d.Posture == nil:
	case prev != nil && prev.d.Posture == d.Posture:
		posture = prev.posture
	default:
		posture, _ = json.Marshal(d.Posture) // a Posture always encodes
	}
	a := d.Answer(now)
	a.Posture = nil
	body, _ := json.Marshal(answerJSON{Answer: a, Posture: posture})
	if n := len(posture); n > 0 && len(body) > n && string(body[len(body)-1-n:len(body)-1]) == string(posture) {
		// The posture is the body's last member: keep it as a slice of the body rather than a
		// second copy. It is most of an answer, and the index holds one per device.
		posture = body[len(body)-1-n : len(body)-1 : len(body)-1]
	}
	return &entry{d: d, deadline: deadline(d, now), body: body, allow: a.Allow, posture: posture}
}

// Delete removes a device (its decision then answers unknown_device).
func (x *Index) Delete(deviceID string) {
	x.mu.Lock()
	x.unindexCerts(x.entries[deviceID])
	delete(x.entries, deviceID)
	x.mu.Unlock()
	x.changedAt.Store(time.Now().UnixNano())
}

// unindexCerts drops e's certificates from the lookup maps; x.mu is held.
func (x *Index) unindexCerts(e *entry) {
	if e == nil {
		return
	}
	for _, s := range e.d.CertSerials {
		delete(x.bySerial, s)
	}
	for _, fp := range e.d.CertSHA256 {
		delete(x.bySHA256, fp)
	}
}

// MarkLoaded declares the index complete: lookups stop answering index_not_loaded.
func (x *Index) MarkLoaded() {
	now := time.Now().UnixNano()
	x.loadedAt.Store(now)
	x.changedAt.Store(now)
	x.loaded.Store(true)
}

// ChangedAt returns when a decision was last put or deleted or the index loaded (wall clock),
// or zero before any of these.
func (x *Index) ChangedAt() time.Time { return unixNano(x.changedAt.Load()) }

// LoadedAt returns when the index was last marked loaded after its full load (wall clock), or
// zero.
func (x *Index) LoadedAt() time.Time { return unixNano(x.loadedAt.Load()) }

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Loaded reports whether the index finished loading.
func (x *Index) Loaded() bool { return x.loaded.Load() }

// SetFreshUntil declares the index current until t (wall clock): past it, every lookup denies
// with index_stale until the next call. A replica on a shared database calls it each time it has
// caught up with the changes other replicas committed; a lone server never does, and its index
// never goes stale.
func (x *Index) SetFreshUntil(t time.Time) { x.freshUntil.Store(t.UnixNano()) }

// FreshUntil returns the time set by SetFreshUntil, or zero when the index does not expire.
func (x *Index) FreshUntil() time.Time { return unixNano(x.freshUntil.Load()) }

// unusable returns the reason the index cannot answer at all now, or "".
func (x *Index) unusable() (code, detail string) {
	if !x.Loaded() {
		return ReasonIndexNotLoaded, "the server is starting and has not loaded every decision yet"
	}
	if f := x.freshUntil.Load(); f != 0 && time.Now().UnixNano() > f {
		return ReasonIndexStale, "this server lost touch with the shared database and has not caught up with its changes"
	}
	return "", ""
}

// Len returns how many devices are indexed.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries)
}

// Lookup answers for deviceID at now. It never fails open: an unloaded index or an unknown
// device is a deny.
func (x *Index) Lookup(deviceID string, now time.Time) Answer {
	if code, detail := x.unusable(); code != "" {
		return DenyAnswer(deviceID, code, detail)
	}
	x.mu.RLock()
	e := x.entries[deviceID]
	x.mu.RUnlock()
	if e == nil {
		return DenyAnswer(deviceID, ReasonUnknownDevice, "no enrolled device has this id")
	}
	return e.d.Answer(now)
}

// LookupJSON is Lookup already encoded, for the hot HTTP path: before the decision's next
// deadline it returns cached bytes without evaluating or encoding anything.
func (x *Index) LookupJSON(deviceID string, now time.Time) (body []byte, allow bool) {
	if code, detail := x.unusable(); code != "" {
		b, _ := json.Marshal(DenyAnswer(deviceID, code, detail))
		return b, false
	}
	x.mu.RLock()
	e := x.entries[deviceID]
	x.mu.RUnlock()
	if e == nil {
		b, _ := json.Marshal(DenyAnswer(deviceID, ReasonUnknownDevice, "no enrolled device has this id"))
		return b, false
	}
	if now.Before(e.deadline) {
		return e.body, e.allow
	}
	// Past a deadline: re-derive and cache the entry for the new period. Concurrent readers may
	// both do it; the results are identical.
	ne := newEntry(e.d, now, e)
	x.mu.Lock()
	if x.entries[deviceID] == e {
		x.entries[deviceID] = ne
	}
	x.mu.Unlock()
	return ne.body, ne.allow
}

// DeviceForSerial returns the device holding the certificate serial (hex), or "".
func (x *Index) DeviceForSerial(serial string) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.bySerial[serial]
}

// DeviceForSHA256 returns the device holding the certificate with this SHA-256 fingerprint
// (lower-case hex), or "".
func (x *Index) DeviceForSHA256(fingerprint string) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.bySHA256[fingerprint]
}

// Decision returns a copy of the stored decision of deviceID, or nil.
func (x *Index) Decision(deviceID string) *Decision {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if e := x.entries[deviceID]; e != nil {
		d := *e.d
		return &d
	}
	return nil
}

// MaxDeviceIDLen bounds a device ID on the access API; longer IDs are malformed.
const MaxDeviceIDLen = 128

// DeviceHandler serves GET /access/v1/devices/{id} from x: the hot path of every session start,
// so it writes cached bytes and allocates nothing it does not have to.
func DeviceHandler(x *Index) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { x.WriteAnswer(w, r.PathValue("id")) }
}

// WriteAnswer writes the access answer for device id as a 200 JSON response.
func (x *Index) WriteAnswer(w http.ResponseWriter, id string) {
	var body []byte
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		body, _ = json.Marshal(DenyAnswer(id, ReasonInvalidDeviceID, "the device id is malformed"))
	} else {
		body, _ = x.LookupJSON(id, x.now())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.Write(body)
}

// ReasonCodes lists the codes of a's reasons, in order.
func (a Answer) ReasonCodes() []string {
	codes := make([]string, len(a.Reasons))
	for i, r := range a.Reasons {
		codes[i] = r.Code
	}
	return codes
}
