package posture

import (
	"encoding/json"

	"github.com/halemdm/hale/remediation"
)

// remedy renders the remediation of reasons for the device's user: in the language of
// acceptLanguage (an Accept-Language header value), with the steps for platform, naming the
// Gate's help desk. No reasons, no remediation.
func (g *Gate) remedy(reasons []Reason, acceptLanguage, platform string) []remediation.Item {
	if len(reasons) == 0 {
		return nil
	}
	c := remediation.Default()
	codes := make([]string, len(reasons))
	for i, r := range reasons {
		codes[i] = r.Code
	}
	return c.Items(codes, remediation.Request{Lang: c.Match(acceptLanguage), Platform: platform, HelpDesk: g.HelpDesk})
}

// platformOf reads the platform of a decision's raw posture, or "".
func platformOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var p struct {
		Platform string `json:"platform"`
	}
	if json.Unmarshal(raw, &p) != nil {
		return ""
	}
	return p.Platform
}
