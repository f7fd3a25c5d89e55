// Package ddmschema checks declarative device management JSON against Apple's schema (the YAML
// of the apple/device-management repository): declarations, status items and protocol
// messages, for their key names, types, required keys, allowed values and ranges, and for the
// OS availability of declaration types and keys. Tests use it to hold Hale's declarations and the
// simulator's reports to what a real device and server exchange.
package ddmschema

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Key is one key of a schema's payloadkeys (or of a key's subkeys).
type Key struct {
	Key         string            `yaml:"key"`
	Type        string            `yaml:"type"`
	Presence    string            `yaml:"presence"`
	RangeList   []any             `yaml:"rangelist"`
	Range       *Range            `yaml:"range"`
	SupportedOS map[string]OSInfo `yaml:"supportedOS"`
	SubKeys     []Key             `yaml:"subkeys"`
}

// Range bounds a number.
type Range struct {
	Min *float64 `yaml:"min"`
	Max *float64 `yaml:"max"`
}

// OSInfo is a platform's availability of a type or key.
type OSInfo struct {
	Introduced         string   `yaml:"introduced"`
	AllowedEnrollments []string `yaml:"allowed-enrollments"`
}

// Schema is one schema file.
type Schema struct {
	Payload struct {
		DeclarationType string            `yaml:"declarationtype"`
		StatusItemType  string            `yaml:"statusitemtype"`
		RequestType     string            `yaml:"requesttype"`
		SupportedOS     map[string]OSInfo `yaml:"supportedOS"`
	} `yaml:"payload"`
	PayloadKeys []Key `yaml:"payloadkeys"`
}

// Set is every declarative schema of one copy of the repository.
type Set struct {
	Declarations map[string]*Schema // by declaration type
	StatusItems  map[string]*Schema // by status item name
	Protocol     map[string]*Schema // by request type (TokensResponse, DeclarationItemsResponse, StatusReport)
	Base         *Schema            // DeclarationBase
}

// Load reads the schemas under dir (the repository's root, holding declarative/).
func Load(dir string) (*Set, error) {
	s := &Set{Declarations: map[string]*Schema{}, StatusItems: map[string]*Schema{}, Protocol: map[string]*Schema{}}
	root := filepath.Join(dir, "declarative")
	err := filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var sc Schema
		if err := yaml.Unmarshal(b, &sc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case sc.Payload.DeclarationType == "any":
			s.Base = &sc
		case sc.Payload.DeclarationType != "":
			s.Declarations[sc.Payload.DeclarationType] = &sc
		case sc.Payload.StatusItemType != "":
			s.StatusItems[sc.Payload.StatusItemType] = &sc
		case sc.Payload.RequestType != "":
			s.Protocol[sc.Payload.RequestType] = &sc
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.Base == nil || len(s.Declarations) == 0 {
		return nil, errors.New("ddmschema: no declarative schemas under " + root)
	}
	return s, nil
}

// Platform is an OS as the schema names it ("iOS", "macOS") with its version.
type Platform struct {
	OS      string
	Version string
	// Enrollment is how the device is enrolled: supervised, device, user or local.
	Enrollment string
}

// ValidateDeclaration checks one declaration (decoded JSON) for p: the base keys, the type's
// availability on p, and the payload against the type's keys.
func (s *Set) ValidateDeclaration(decl map[string]any, p Platform) []error {
	var errs []error
	errs = append(errs, checkDict("declaration", decl, s.Base.PayloadKeys, p)...)
	typ, _ := decl["Type"].(string)
	sc := s.Declarations[typ]
	if sc == nil {
		return append(errs, fmt.Errorf("declaration type %q is not in the schema", typ))
	}
	if err := available(typ, sc.Payload.SupportedOS, p); err != nil {
		errs = append(errs, err)
	}
	payload, _ := decl["Payload"].(map[string]any)
	return append(errs, checkDict(typ, payload, sc.PayloadKeys, p)...)
}

// ValidateProtocol checks a protocol message (TokensResponse, DeclarationItemsResponse,
// StatusReport).
func (s *Set) ValidateProtocol(requestType string, msg map[string]any) []error {
	sc := s.Protocol[requestType]
	if sc == nil {
		return []error{fmt.Errorf("protocol message %q is not in the schema", requestType)}
	}
	return checkDict(requestType, msg, sc.PayloadKeys, Platform{})
}

// ValidateStatusItem checks one status item's value, named by its dotted name
// ("passcode.is-compliant"), and its availability on p.
func (s *Set) ValidateStatusItem(name string, value any, p Platform) []error {
	sc := s.StatusItems[name]
	if sc == nil {
		return []error{fmt.Errorf("status item %q is not in the schema", name)}
	}
	var errs []error
	if err := available(name, sc.Payload.SupportedOS, p); err != nil {
		errs = append(errs, err)
	}
	return append(errs, checkDict(name, map[string]any{name: value}, sc.PayloadKeys, p)...)
}

// StatusItemNames lists the status items the schema knows.
func (s *Set) StatusItemNames() []string {
	out := make([]string, 0, len(s.StatusItems))
	for n := range s.StatusItems {
		out = append(out, n)
	}
	return out
}

// available checks that what is available on p (introduced, not n/a, at or before p's version,
// and for p's enrollment when both name one). A zero Platform skips the check.
func available(what string, sup map[string]OSInfo, p Platform) error {
	if p.OS == "" || sup == nil {
		return nil
	}
	info, ok := sup[p.OS]
	if !ok || info.Introduced == "" || info.Introduced == "n/a" {
		return fmt.Errorf("%s is not available on %s", what, p.OS)
	}
	if p.Version != "" && compareVersions(p.Version, info.Introduced) < 0 {
		return fmt.Errorf("%s needs %s %s or later (device runs %s)", what, p.OS, info.Introduced, p.Version)
	}
	if p.Enrollment != "" && len(info.AllowedEnrollments) > 0 {
		for _, e := range info.AllowedEnrollments {
			if e == p.Enrollment {
				return nil
			}
		}
		return fmt.Errorf("%s is not allowed on a %s enrollment of %s", what, p.Enrollment, p.OS)
	}
	return nil
}

// checkDict checks d against keys: unknown keys, missing required keys, and each value.
func checkDict(path string, d map[string]any, keys []Key, p Platform) []error {
	if d == nil {
		return []error{fmt.Errorf("%s: not a dictionary", path)}
	}
	var errs []error
	known := map[string]*Key{}
	anyKey := false
	for i := range keys {
		if keys[i].Key == "ANY" {
			anyKey = true
		}
		known[keys[i].Key] = &keys[i]
	}
	for k, v := range d {
		kp := path + "." + k
		def := known[k]
		if def == nil {
			if !anyKey {
				errs = append(errs, fmt.Errorf("%s: key not in the schema", kp))
			}
			continue
		}
		if def.SupportedOS != nil && p.OS != "" {
			if info, ok := def.SupportedOS[p.OS]; ok && info.Introduced != "" {
				if err := available(kp, def.SupportedOS, Platform{OS: p.OS, Version: p.Version}); err != nil {
					errs = append(errs, err)
				}
			}
		}
		errs = append(errs, checkValue(kp, v, def, p)...)
	}
	for _, k := range keys {
		if k.Presence == "required" && k.Key != "ANY" {
			if _, ok := d[k.Key]; !ok {
				errs = append(errs, fmt.Errorf("%s.%s: required key missing", path, k.Key))
			}
		}
	}
	return errs
}

func checkValue(path string, v any, def *Key, p Platform) []error {
	switch def.Type {
	case "<any>":
		return nil
	case "<string>":
		s, ok := v.(string)
		if !ok {
			return []error{fmt.Errorf("%s: want a string, got %T", path, v)}
		}
		if len(def.RangeList) > 0 && !inList(s, def.RangeList) {
			return []error{fmt.Errorf("%s: %q is not one of %v", path, s, def.RangeList)}
		}
	case "<boolean>":
		if _, ok := v.(bool); !ok {
			return []error{fmt.Errorf("%s: want a boolean, got %T", path, v)}
		}
	case "<integer>", "<real>":
		f, ok := number(v)
		if !ok || (def.Type == "<integer>" && f != math.Trunc(f)) {
			return []error{fmt.Errorf("%s: want %s, got %v (%T)", path, def.Type, v, v)}
		}
		if r := def.Range; r != nil && ((r.Min != nil && f < *r.Min) || (r.Max != nil && f > *r.Max)) {
			return []error{fmt.Errorf("%s: %v is outside the schema's range", path, f)}
		}
		if len(def.RangeList) > 0 && !inList(strconv.FormatFloat(f, 'f', -1, 64), def.RangeList) {
			return []error{fmt.Errorf("%s: %v is not one of %v", path, f, def.RangeList)}
		}
	case "<dictionary>":
		m, ok := v.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%s: want a dictionary, got %T", path, v)}
		}
		if len(def.SubKeys) == 0 {
			return nil
		}
		return checkDict(path, m, def.SubKeys, p)
	case "<array>":
		a, ok := v.([]any)
		if !ok {
			return []error{fmt.Errorf("%s: want an array, got %T", path, v)}
		}
		if len(def.SubKeys) != 1 {
			return nil
		}
		var errs []error
		for i, e := range a {
			errs = append(errs, checkValue(fmt.Sprintf("%s[%d]", path, i), e, &def.SubKeys[0], p)...)
		}
		return errs
	case "<data>", "<date>":
		if _, ok := v.(string); !ok {
			return []error{fmt.Errorf("%s: want %s as a string, got %T", path, def.Type, v)}
		}
	default:
		return []error{fmt.Errorf("%s: schema type %q unknown to the checker", path, def.Type)}
	}
	return nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func inList(s string, list []any) bool {
	for _, e := range list {
		if fmt.Sprint(e) == s {
			return true
		}
	}
	return false
}

// compareVersions compares dotted numeric versions ("17.4" < "17.10").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
