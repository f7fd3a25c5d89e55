package ddm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// maxDeclarationsReported bounds the declarations one management.declarations item may list
// per category; past it the report is refused.
const maxDeclarationsReported = 1000

// statusReport is a device's status report (Apple's StatusReport): the items that changed (or
// every subscribed item when FullReport), nested by the dotted name's parts.
type statusReport struct {
	StatusItems map[string]any `json:"StatusItems"`
	Errors      []struct {
		StatusItem string `json:"StatusItem"`
		Reasons    []struct {
			Code        string `json:"Code"`
			Description string `json:"Description"`
		} `json:"Reasons"`
	} `json:"Errors"`
	FullReport bool `json:"FullReport"`
}

// item returns the status item of a dotted name ("passcode.is-compliant"): items nest by the
// part before the first dot, then by the rest ("device" → "operating-system" → "version").
func (r *statusReport) item(name string) (any, bool) {
	var cur any = r.StatusItems
	for _, part := range splitName(name) {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// splitName splits a status item name into its nesting: every dot separates a level.
func splitName(name string) []string { return strings.Split(name, ".") }

// declarationItem is one entry of management.declarations.
type declarationItem struct {
	Identifier  string `json:"identifier"`
	ServerToken string `json:"server-token"`
	Active      *bool  `json:"active"`
	Valid       string `json:"valid"`
	Reasons     []struct {
		Code        string `json:"code"`
		Description string `json:"description"`
	} `json:"reasons"`
}

// parseDeclarations reads a management.declarations value.
func parseDeclarations(v any) ([]policies.DeclarationState, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var cats map[string][]declarationItem
	if err := json.Unmarshal(b, &cats); err != nil {
		return nil, fmt.Errorf("management.declarations: %w", err)
	}
	out := []policies.DeclarationState{}
	for _, cat := range []string{"activations", "configurations", "assets", "management"} {
		items := cats[cat]
		if len(items) > maxDeclarationsReported {
			return nil, fmt.Errorf("management.declarations: %d %s (at most %d)", len(items), cat, maxDeclarationsReported)
		}
		for _, it := range items {
			if it.Identifier == "" || it.Active == nil || !slices.Contains([]string{"valid", "invalid", "unknown"}, it.Valid) {
				return nil, fmt.Errorf("management.declarations: an entry of %s lacks identifier, active or a valid state", cat)
			}
			st := policies.DeclarationState{Identifier: clip(it.Identifier), ServerToken: clip(it.ServerToken),
				Category: strings.TrimSuffix(cat, "s"), Active: *it.Active, Valid: it.Valid}
			if cat == "management" {
				st.Category = "management"
			}
			for _, r := range it.Reasons {
				if len(st.Reasons) < 8 {
					st.Reasons = append(st.Reasons, clip(r.Code))
				}
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// ingestStatus maps a status report into the device's posture (claims of provenance mdm
// observed at the report's arrival), which re-evaluates the device and updates the decision
// index and the event outbox at once; declarations the device newly reports failed go on the
// audit record.
func (s *Service) ingestStatus(ctx context.Context, d *inventory.Device, data []byte) error {
	var rep statusReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return fmt.Errorf("ddm: status report of device %s: %w", d.ID, err)
	}
	if rep.StatusItems == nil {
		return fmt.Errorf("ddm: status report of device %s has no StatusItems", d.ID)
	}
	var decls []policies.DeclarationState
	if v, ok := rep.item("management.declarations"); ok {
		var err error
		if decls, err = parseDeclarations(v); err != nil {
			return fmt.Errorf("ddm: status report of device %s: %w", d.ID, err)
		}
	}
	for _, e := range rep.Errors {
		for _, r := range e.Reasons {
			s.log.WarnContext(ctx, "device could not report a status item", "device_id", d.ID,
				"status_item", clip(e.StatusItem), "code", clip(r.Code), "description", clip(r.Description))
		}
	}
	at := s.now().UTC()
	pl := policies.Platform(d.OS)
	var newlyFailed []policies.DeclarationState
	_, err := s.d.Posture.IngestAppleResult(ctx, d.ID, func(p *policies.Posture) {
		if pl != "" {
			p.Platform = pl
		}
		mdm := policies.ProvenanceMDM
		if v, ok := boolItem(&rep, "passcode.is-present"); ok {
			p.PasscodePresent = policies.Observe(v, mdm, at)
			if pl == policies.PlatformIOS || pl == policies.PlatformIPadOS {
				// Every device on declarative management has hardware encryption; a passcode
				// turns data protection on.
				p.DiskEncrypted = policies.Observe(v, mdm, at)
			}
		}
		if v, ok := boolItem(&rep, "passcode.is-compliant"); ok {
			p.PasscodeCompliant = policies.Observe(v, mdm, at)
		}
		if v, ok := boolItem(&rep, "diskmanagement.filevault.enabled"); ok && pl == policies.PlatformMacOS {
			p.DiskEncrypted = policies.Observe(v, mdm, at)
		}
		version, vok := stringItem(&rep, "device.operating-system.version")
		build, bok := stringItem(&rep, "device.operating-system.build-version")
		if vok && !validVersion(version) {
			vok = false
		}
		if vok || bok {
			os := policies.OSInfo{}
			if p.OS != nil {
				os = p.OS.Value
			}
			if vok {
				os.Version = version
			}
			if bok {
				os.Build = clip(build)
			}
			if os.Version != "" {
				p.OS = policies.Observe(os, mdm, at)
			}
		}
		if state, ok := stringItem(&rep, "softwareupdate.install-state"); ok && validInstallState(state) {
			u := policies.OSUpdateStatus{InstallState: state}
			if v, ok := rep.item("softwareupdate.pending-version"); ok {
				if m, ok := v.(map[string]any); ok {
					if ver, _ := m["os-version"].(string); validVersion(ver) {
						u.PendingVersion = ver
						b, _ := m["build-version"].(string)
						u.PendingBuild = clip(b)
					}
				}
			}
			p.OSUpdate = policies.Observe(u, mdm, at)
		}
		if decls != nil {
			failedBefore := map[string]string{}
			if p.Declarations != nil {
				for _, old := range p.Declarations.Value {
					if old.Failed() {
						failedBefore[old.Identifier] = old.ServerToken
					}
				}
			}
			newlyFailed = newlyFailed[:0]
			for _, st := range decls {
				if tok, was := failedBefore[st.Identifier]; st.Failed() && (!was || tok != st.ServerToken) {
					newlyFailed = append(newlyFailed, st)
				}
			}
			p.Declarations = policies.Observe(decls, mdm, at)
			// On declarative management the declarations' status is the evidence that the
			// restrictions (inside the legacy profile declaration) are installed; a Restrictions
			// answer from before they were active would say nothing is in force.
			p.Restrictions = nil
		}
	})
	if err != nil {
		return fmt.Errorf("ddm: ingesting the status report of device %s: %w", d.ID, err)
	}
	for _, st := range newlyFailed {
		s.log.WarnContext(ctx, "device refused or did not activate a declaration", "device_id", d.ID,
			"declaration", st.Identifier, "valid", st.Valid, "active", st.Active, "reasons", st.Reasons)
		_, err := s.d.Audit.Append(ctx, audit.Entry{Actor: "device:" + d.ID, Role: "device", Action: "declaration.failed",
			Target: d.ID, Outcome: audit.OutcomeError, Details: map[string]string{
				"declaration": st.Identifier, "server_token": st.ServerToken, "valid": st.Valid,
				"active": fmt.Sprint(st.Active), "reasons": strings.Join(st.Reasons, ","),
			}})
		if err != nil {
			return fmt.Errorf("ddm: auditing a failed declaration of device %s: %w", d.ID, err)
		}
	}
	return nil
}

func boolItem(r *statusReport, name string) (bool, bool) {
	v, ok := r.item(name)
	b, isBool := v.(bool)
	return b, ok && isBool
}

func stringItem(r *statusReport, name string) (string, bool) {
	v, ok := r.item(name)
	s, isString := v.(string)
	return s, ok && isString && s != ""
}

// validVersion accepts a dotted numeric OS version of at most 32 bytes.
func validVersion(v string) bool {
	if len(v) > 32 {
		return false
	}
	_, err := policies.CompareVersions(v, "0")
	return err == nil
}

// validInstallState accepts the values Apple's schema lists for softwareupdate.install-state.
func validInstallState(s string) bool {
	switch s {
	case "none", "downloading", "prepared", "installing", "failed":
		return true
	}
	return false
}
