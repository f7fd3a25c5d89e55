package applesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// Declarative device management (DDM), as a device speaks it: the DeclarativeManagement command
// (optionally carrying the server's tokens) makes the device sync after the poll that carried
// it: "tokens", "declaration-items", then each new or changed declaration, each a
// DeclarativeManagement check-in whose Endpoint names it. Configurations take effect when an
// activation names them; passcode settings join the passcode policies, legacy profiles are
// downloaded from their ProfileURL and installed. The device then reports the status items it
// is subscribed to, and from then on reports a status item whenever its value changes, unasked
// ([Device.ReportStatus], run by [Device.RunPushLoop] on every state change).

// Declaration is a declaration the device synced, with its state as management.declarations
// reports it.
type Declaration struct {
	Type        string
	Identifier  string
	ServerToken string
	// Category is activation, configuration, asset or management.
	Category string
	Payload  map[string]any
	// Active: an activation named it (or it is an activation whose configurations all applied).
	Active bool
	// Valid is valid, invalid or unknown; Reasons are the error codes when invalid.
	Valid   string
	Reasons []string
}

// DDM limits on what a device accepts.
const (
	// MaxDeclarations bounds the declarations one manifest may list.
	MaxDeclarations = 500
	// maxDDMResponse bounds one DDM answer.
	maxDDMResponse = 1 << 20
)

// DDMState is what a device on declarative management keeps, in its [State].
type DDMState struct {
	// Declarations are the synced declarations, by manifest order.
	Declarations []Declaration
	// DeclarationsToken is the token of the last sync.
	DeclarationsToken string
	// UpdateInstallState is softwareupdate.install-state: none, downloading, prepared,
	// installing or failed.
	UpdateInstallState string
	// Refuse lists declaration identifiers the device refuses to apply (valid: invalid,
	// Error.ConfigurationCannotBeApplied), as a device does with a setting it cannot honour.
	Refuse []string
	// legacyProfiles are the identifiers of the profiles legacy declarations installed.
	legacyProfiles []string
}

// clone returns a deep copy.
func (s DDMState) clone() DDMState {
	s.legacyProfiles = slices.Clone(s.legacyProfiles)
	s.Refuse = slices.Clone(s.Refuse)
	s.Declarations = slices.Clone(s.Declarations)
	for i := range s.Declarations {
		s.Declarations[i].Payload = copyDict(s.Declarations[i].Payload)
		s.Declarations[i].Reasons = slices.Clone(s.Declarations[i].Reasons)
	}
	return s
}

// Declaration returns the synced declaration with identifier id.
func (s State) Declaration(id string) (Declaration, bool) {
	for _, d := range s.DDM.Declarations {
		if d.Identifier == id {
			return d, true
		}
	}
	return Declaration{}, false
}

// activeConfigurations returns the active configurations of type typ.
func (s State) activeConfigurations(typ string) []Declaration {
	var out []Declaration
	for _, d := range s.DDM.Declarations {
		if d.Type == typ && d.Active && d.Valid == "valid" {
			out = append(out, d)
		}
	}
	return out
}

// passcodeCompliantWithDeclarations checks the passcode against every active
// com.apple.configuration.passcode.settings.
func (s State) passcodeCompliantWithDeclarations() bool {
	for _, d := range s.activeConfigurations("com.apple.configuration.passcode.settings") {
		c := d.Payload
		require, _ := c["RequirePasscode"].(bool)
		complexReq, _ := c["RequireComplexPasscode"].(bool)
		alnum, _ := c["RequireAlphanumericPasscode"].(bool)
		minLength, _ := c["MinimumLength"].(float64)
		minComplex, _ := c["MinimumComplexCharacters"].(float64)
		if !(require || complexReq || alnum || minLength > 0 || minComplex > 0) {
			continue
		}
		if !s.PasscodePresent || float64(s.PasscodeLength) < minLength || (alnum && !s.PasscodeAlphanumeric) ||
			(complexReq && s.PasscodeSimple) {
			return false
		}
	}
	return true
}

// statusValues are the current values of the status items the device is subscribed to.
func (s State) statusValues() map[string]any {
	subscribed := map[string]bool{}
	for _, d := range s.activeConfigurations("com.apple.configuration.management.status-subscriptions") {
		items, _ := d.Payload["StatusItems"].([]any)
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				if name, ok := m["Name"].(string); ok {
					subscribed[name] = true
				}
			}
		}
	}
	ios := s.platform() == IOS
	out := map[string]any{}
	set := func(name string, v any, available bool) {
		if subscribed[name] && available {
			out[name] = v
		}
	}
	set("passcode.is-compliant", s.PasscodeCompliant(), ios)
	set("passcode.is-present", s.PasscodePresent, ios)
	set("device.operating-system.version", s.OSVersion, s.OSVersion != "")
	set("device.operating-system.build-version", s.BuildVersion, s.BuildVersion != "")
	state := s.DDM.UpdateInstallState
	if state == "" {
		state = "none"
	}
	set("softwareupdate.install-state", state, true)
	for _, d := range s.activeConfigurations("com.apple.configuration.softwareupdate.enforcement.specific") {
		target, _ := d.Payload["TargetOSVersion"].(string)
		build, _ := d.Payload["TargetBuildVersion"].(string)
		if target != "" && versionLess(s.OSVersion, target) {
			set("softwareupdate.pending-version", map[string]any{"os-version": target, "build-version": build}, true)
		}
	}
	set("diskmanagement.filevault.enabled", s.FileVaultEnabled, !ios)
	set("management.declarations", s.declarationsStatus(), true)
	return out
}

// declarationsStatus is the management.declarations value.
func (s State) declarationsStatus() map[string]any {
	cats := map[string][]any{"activations": {}, "configurations": {}, "assets": {}, "management": {}}
	for _, d := range s.DDM.Declarations {
		e := map[string]any{"identifier": d.Identifier, "server-token": d.ServerToken, "active": d.Active, "valid": d.Valid}
		if len(d.Reasons) > 0 {
			var rs []any
			for _, r := range d.Reasons {
				rs = append(rs, map[string]any{"code": r})
			}
			e["reasons"] = rs
		}
		key := d.Category + "s"
		if d.Category == "management" {
			key = "management"
		}
		cats[key] = append(cats[key], e)
	}
	out := map[string]any{}
	for k, v := range cats {
		out[k] = v
	}
	return out
}

// nest turns dotted status item names into the nested StatusItems dictionary.
func nest(values map[string]any) map[string]any {
	out := map[string]any{}
	for name, v := range values {
		parts := strings.Split(name, ".")
		cur := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	return out
}

// declarativeManagement handles the DeclarativeManagement command: the device acknowledges it
// and syncs once the poll ends; d.mu is held.
func (d *Device) declarativeManagement(c *command) result {
	if data, ok := getData(c.Body, "Data"); ok && len(data) > 0 {
		var tok struct {
			SyncTokens struct{ DeclarationsToken string } `json:"SyncTokens"`
		}
		if err := json.Unmarshal(data, &tok); err != nil || tok.SyncTokens.DeclarationsToken == "" {
			return formatError("DeclarativeManagement Data is not a tokens response")
		}
		if tok.SyncTokens.DeclarationsToken == d.state.DDM.DeclarationsToken {
			return ack(nil) // nothing changed
		}
	}
	d.syncPending = true
	return ack(nil)
}

// ddmCheckin sends a DeclarativeManagement check-in for endpoint (with data for a status
// report) and returns the answer.
func (d *Device) ddmCheckin(ctx context.Context, endpoint string, data []byte) ([]byte, error) {
	msg := d.ident(map[string]any{"MessageType": "DeclarativeManagement", "Topic": d.topic, "Endpoint": endpoint})
	if data != nil {
		msg["Data"] = data
	}
	body, err := encodePlist(msg)
	if err != nil {
		return nil, err
	}
	out, err := d.exchange(ctx, body, true)
	if err != nil {
		return nil, fmt.Errorf("applesim: DeclarativeManagement %s: %w", endpoint, err)
	}
	if len(out) > maxDDMResponse {
		return nil, fmt.Errorf("applesim: DeclarativeManagement %s: answer too large", endpoint)
	}
	return out, nil
}

// SyncDeclarations syncs declarations now, as after a DeclarativeManagement command, then
// sends a full status report.
func (d *Device) SyncDeclarations(ctx context.Context) error {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	return d.syncLocked(ctx)
}

// syncLocked syncs; d.connMu is held.
func (d *Device) syncLocked(ctx context.Context) error {
	d.mu.Lock()
	d.syncPending = false
	d.mu.Unlock()
	b, err := d.ddmCheckin(ctx, "declaration-items", nil)
	if err != nil {
		return err
	}
	var manifest struct {
		Declarations      map[string][]struct{ Identifier, ServerToken string }
		DeclarationsToken string
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		return fmt.Errorf("applesim: declaration-items: %w", err)
	}
	cur := d.State().DDM.Declarations
	var next []Declaration
	n := 0
	for _, cat := range []string{"Activations", "Configurations", "Assets", "Management"} {
		for _, it := range manifest.Declarations[cat] {
			if n++; n > MaxDeclarations {
				return errors.New("applesim: declaration-items lists too many declarations")
			}
			category := strings.ToLower(strings.TrimSuffix(cat, "s"))
			if cat == "Management" {
				category = "management"
			}
			if i := slices.IndexFunc(cur, func(x Declaration) bool {
				return x.Identifier == it.Identifier && x.ServerToken == it.ServerToken
			}); i >= 0 {
				next = append(next, cur[i])
				continue
			}
			raw, err := d.ddmCheckin(ctx, "declaration/"+category+"/"+it.Identifier, nil)
			if err != nil {
				return err
			}
			var decl Declaration
			var wire struct {
				Type, Identifier, ServerToken string
				Payload                       map[string]any
			}
			if err := json.Unmarshal(raw, &wire); err != nil || wire.Identifier != it.Identifier || wire.ServerToken != it.ServerToken {
				decl = Declaration{Identifier: it.Identifier, ServerToken: it.ServerToken, Category: category,
					Valid: "invalid", Reasons: []string{"Error.DeclarationCannotBeDeserialized"}}
			} else {
				decl = Declaration{Type: wire.Type, Identifier: wire.Identifier, ServerToken: wire.ServerToken,
					Category: category, Payload: wire.Payload, Valid: "valid"}
			}
			next = append(next, decl)
		}
	}
	next = d.apply(ctx, next)
	d.Update(func(s *State) {
		s.DDM.Declarations = next
		s.DDM.DeclarationsToken = manifest.DeclarationsToken
	})
	return d.reportLocked(ctx, true)
}

// apply activates the configurations activations name and carries out each: legacy profiles
// are downloaded and installed (and removed with their declaration).
func (d *Device) apply(ctx context.Context, decls []Declaration) []Declaration {
	prev := d.State()
	activated := map[string]bool{}
	for i := range decls {
		if decls[i].Type != "com.apple.activation.simple" || decls[i].Valid != "valid" {
			continue
		}
		decls[i].Active = true
		ids, _ := decls[i].Payload["StandardConfigurations"].([]any)
		for _, id := range ids {
			if s, ok := id.(string); ok {
				activated[s] = true
			}
		}
	}
	wanted := map[string]bool{}
	for i := range decls {
		dc := &decls[i]
		if dc.Category != "configuration" || dc.Valid != "valid" {
			continue
		}
		dc.Active = activated[dc.Identifier]
		if slices.Contains(prev.DDM.Refuse, dc.Identifier) {
			dc.Active, dc.Valid, dc.Reasons = false, "invalid", []string{"Error.ConfigurationCannotBeApplied"}
			continue
		}
		switch dc.Type {
		case "com.apple.configuration.passcode.settings", "com.apple.configuration.management.status-subscriptions",
			"com.apple.configuration.softwareupdate.enforcement.specific":
		case "com.apple.configuration.legacy":
			if !dc.Active {
				continue
			}
			id, err := d.installLegacy(ctx, dc.Payload)
			if err != nil {
				d.logger.Warn("legacy profile", "declaration", dc.Identifier, "err", err)
				dc.Active, dc.Valid, dc.Reasons = false, "invalid", []string{"Error.ConfigurationCannotBeApplied"}
				continue
			}
			wanted[id] = true
		default:
			dc.Active, dc.Valid, dc.Reasons = false, "invalid", []string{"Error.UnknownDeclarationType"}
		}
	}
	// Profiles of legacy declarations that are gone are removed with them.
	d.Update(func(s *State) {
		s.Profiles = slices.DeleteFunc(s.Profiles, func(p Profile) bool {
			return slices.Contains(prev.DDM.legacyProfiles, p.Identifier) && !wanted[p.Identifier]
		})
		s.DDM.legacyProfiles = slices.Collect(maps.Keys(wanted))
	})
	return decls
}

// installLegacy downloads and installs the profile of a legacy declaration and returns its
// identifier.
func (d *Device) installLegacy(ctx context.Context, payload map[string]any) (string, error) {
	u, _ := payload["ProfileURL"].(string)
	if !strings.HasPrefix(u, "https://") {
		return "", fmt.Errorf("ProfileURL %q is not https", u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxProfileSize+1))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || len(body) > MaxProfileSize {
		return "", fmt.Errorf("download %s: %s", u, resp.Status)
	}
	p, err := ParseProfile(body)
	if err != nil {
		return "", err
	}
	d.Update(func(s *State) {
		for i := range s.Profiles {
			if s.Profiles[i].Identifier == p.Identifier {
				s.Profiles[i] = *p
				return
			}
		}
		s.Profiles = append(s.Profiles, *p)
	})
	return p.Identifier, nil
}

// ReportStatus sends a status report of the subscribed items whose value changed since the
// last report (all of them when full), as a device does unasked; it reports whether one was
// sent. A device on no declarative management sends nothing.
func (d *Device) ReportStatus(ctx context.Context, full bool) (bool, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	return d.reportIfChanged(ctx, full)
}

func (d *Device) reportLocked(ctx context.Context, full bool) error {
	_, err := d.reportIfChanged(ctx, full)
	return err
}

func (d *Device) reportIfChanged(ctx context.Context, full bool) (bool, error) {
	if err := d.checkErased(); err != nil {
		return false, err
	}
	d.mu.Lock()
	values := d.state.statusValues()
	changed := map[string]any{}
	for k, v := range values {
		if old, ok := d.lastStatus[k]; full || !ok || !reflect.DeepEqual(old, v) {
			changed[k] = v
		}
	}
	d.mu.Unlock()
	if len(changed) == 0 {
		return false, nil
	}
	report := map[string]any{"StatusItems": nest(changed), "Errors": []any{}}
	if full {
		report["FullReport"] = true
	}
	b, err := json.Marshal(report)
	if err != nil {
		return false, err
	}
	if _, err := d.ddmCheckin(ctx, "status", b); err != nil {
		return false, err
	}
	d.mu.Lock()
	if d.lastStatus == nil {
		d.lastStatus = map[string]any{}
	}
	maps.Copy(d.lastStatus, changed)
	d.statusReports = append(d.statusReports, bytes.Clone(b))
	d.notifyLocked()
	d.mu.Unlock()
	return true, nil
}

// StatusReports returns the status reports the device sent (JSON), oldest first.
func (d *Device) StatusReports() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([][]byte, len(d.statusReports))
	for i, r := range d.statusReports {
		out[i] = bytes.Clone(r)
	}
	return out
}

// versionLess reports whether dotted version a is older than b.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			fmt.Sscan(as[i], &x)
		}
		if i < len(bs) {
			fmt.Sscan(bs[i], &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}
