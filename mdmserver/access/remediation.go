package access

import (
	"encoding/json"
	"net/http"

	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/remediation"
)

// WantsRemediation reports whether an access request asked for the remediation of its
// answer's reasons: with an Accept-Language header (the messaging app passing on its user's),
// or ?remediation=1. Without either the answer is the cached bytes, as fast as ever.
func WantsRemediation(r *http.Request) bool {
	return r.Header.Get("Accept-Language") != "" || r.URL.Query().Get("remediation") == "1"
}

// AddRemediation adds to an encoded answer (an Answer or posture.Decision) the remediation of
// its reasons, in the catalog language that best matches acceptLanguage, with the steps for the
// answer's platform, naming hd. An answer without reasons, or that does not decode, is
// returned as is.
func AddRemediation(body []byte, acceptLanguage string, hd remediation.HelpDesk) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	var reasons []policies.Reason
	if json.Unmarshal(m["reasons"], &reasons) != nil || len(reasons) == 0 {
		return body
	}
	var pos struct {
		Platform string `json:"platform"`
	}
	if raw := m["posture"]; raw != nil {
		_ = json.Unmarshal(raw, &pos)
	}
	codes := make([]string, len(reasons))
	for i, r := range reasons {
		codes[i] = r.Code
	}
	c := remediation.Default()
	items := c.Items(codes, remediation.Request{Lang: c.Match(acceptLanguage), Platform: pos.Platform, HelpDesk: hd})
	b, err := json.Marshal(items)
	if err != nil {
		return body
	}
	m["remediation"] = b
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// RemediationHandler serves GET /access/v1/devices/{id} like DeviceHandler, and adds the
// remediation of the answer's reasons when the request asks for it (WantsRemediation), naming
// hd for what the user cannot fix.
func RemediationHandler(x *Index, hd remediation.HelpDesk) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !WantsRemediation(r) {
			x.WriteAnswer(w, r.PathValue("id"))
			return
		}
		id := r.PathValue("id")
		var body []byte
		if len(id) == 0 || len(id) > MaxDeviceIDLen {
			body, _ = json.Marshal(DenyAnswer(id, ReasonInvalidDeviceID, "the device id is malformed"))
		} else {
			body, _ = x.LookupJSON(id, x.now())
		}
		lang := remediation.Default().Match(r.Header.Get("Accept-Language"))
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Language", lang)
		h.Set("Vary", "Accept-Language")
		w.Write(AddRemediation(body, r.Header.Get("Accept-Language"), hd))
	}
}
