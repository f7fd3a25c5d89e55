package amapischema

import (
	"strings"
	"testing"
)

// The checker catches what encoding/json would silently drop or pass: unknown fields at any
// depth, enum values in arrays, wrong types, int64 strings that are not numbers.
func TestCheck(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Methods) < 30 || doc.Methods["androidmanagement.enterprises.policies.patch"].HTTPMethod != "PATCH" {
		t.Fatalf("methods: %d", len(doc.Methods))
	}
	good := `{"passwordPolicies":[{"passwordScope":"SCOPE_PROFILE","passwordMinimumLength":6}],
		"keyguardDisabledFeatures":["NOTIFICATIONS"],"maximumTimeToLock":"300000","screenCaptureDisabled":true,
		"openNetworkConfiguration":{"anything":"goes"}}`
	if errs := doc.Check("Policy", []byte(good)); len(errs) != 0 {
		t.Fatalf("good policy: %v", errs)
	}
	for name, c := range map[string]struct{ doc, want string }{
		"unknown nested field": {`{"passwordPolicies":[{"passwordScop":"SCOPE_DEVICE"}]}`, `$.passwordPolicies[0]: unknown field "passwordScop"`},
		"enum in an array":     {`{"keyguardDisabledFeatures":["NOTIFICATION"]}`, `$.keyguardDisabledFeatures[0]: "NOTIFICATION" is not one of`},
		"int64 not a number":   {`{"maximumTimeToLock":"5m"}`, `"5m" is not an int64`},
		"bool as string":       {`{"screenCaptureDisabled":"true"}`, `want a boolean`},
		"integer not whole":    {`{"minimumApiLevel":33.5}`, `want an integer`},
		"not JSON":             {`{`, `not JSON`},
	} {
		errs := doc.Check("Policy", []byte(c.doc))
		if len(errs) != 1 || !strings.Contains(errs[0], c.want) {
			t.Errorf("%s: %v, want one saying %q", name, errs, c.want)
		}
	}
	if errs := doc.Check("NoSuchSchema", []byte(`{}`)); len(errs) != 1 {
		t.Errorf("unknown schema: %v", errs)
	}
}
