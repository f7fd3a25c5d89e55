package compliance

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/halemdm/hale/policies"
)

// claimFields are the indices of Posture's claim fields: pointers to a struct with a Source
// of type Provenance. Found by reflection so a claim added to Posture is merged without a
// change here.
var claimFields = func() []int {
	var out []int
	provenance := reflect.TypeFor[policies.Provenance]()
	t := reflect.TypeFor[policies.Posture]()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
			continue
		}
		if src, ok := f.Type.Elem().FieldByName("Source"); ok && src.Type == provenance {
			out = append(out, i)
		}
	}
	return out
}()

// mergeAgent returns the posture after an agent report received at at: every claim from the
// report, marked agent whatever the report says (an agent only vouches for itself), except
// where old holds an MDM or attested claim for the same fact, which is kept. Claims observed
// after the report arrived are clamped to its arrival, so a fast agent clock cannot keep a
// claim fresh. old and report are not changed.
func mergeAgent(old, report *policies.Posture, at time.Time) *policies.Posture {
	out := &policies.Posture{Platform: report.Platform, ReportedAt: at}
	if out.Platform == "" && old != nil {
		out.Platform = old.Platform
	}
	ov, rv, nv := reflect.ValueOf(old), reflect.ValueOf(report).Elem(), reflect.ValueOf(out).Elem()
	for _, i := range claimFields {
		if old != nil {
			if oc := ov.Elem().Field(i); !oc.IsNil() && oc.Elem().FieldByName("Source").String() != string(policies.ProvenanceAgent) {
				nv.Field(i).Set(oc)
				continue
			}
		}
		rc := rv.Field(i)
		if rc.IsNil() {
			continue
		}
		c := reflect.New(rc.Type().Elem())
		c.Elem().Set(rc.Elem())
		c.Elem().FieldByName("Source").SetString(string(policies.ProvenanceAgent))
		if obs := c.Elem().FieldByName("ObservedAt"); obs.Interface().(time.Time).After(at) {
			obs.Set(reflect.ValueOf(at))
		}
		nv.Field(i).Set(c)
	}
	return out
}

// clonePosture returns a deep copy of p (a new empty posture for nil), so a caller's update
// never changes a posture the index already publishes.
func clonePosture(p *policies.Posture) (*policies.Posture, error) {
	out := new(policies.Posture)
	if p == nil {
		return out, nil
	}
	b, err := json.Marshal(p)
	if err == nil {
		err = json.Unmarshal(b, out)
	}
	if err != nil {
		return nil, fmt.Errorf("compliance: copy posture: %w", err)
	}
	return out, nil
}
