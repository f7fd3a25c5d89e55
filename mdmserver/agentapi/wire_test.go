package agentapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
)

// TestAnswersKeepTheirBytes checks that the answers now encoded from package api's types are
// byte for byte what the server sent when it encoded maps: agents in the field read them.
func TestAnswersKeepTheirBytes(t *testing.T) {
	exp := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"nonce", api.AgentNonce{Nonce: "n1", ExpiresAt: exp}, map[string]any{"nonce": "n1", "expires_at": exp}},
		{"report", api.AgentReportAnswer{Accepted: true, NextReportIn: "1m0s", Nonce: "n2", PolicyETag: `"e"`, Compliant: true},
			map[string]any{"accepted": true, "next_report_in": "1m0s", "nonce": "n2", "policy_etag": `"e"`, "compliant": true}},
		{"renew", api.AgentRenewAnswer{CertificateChain: "pem"}, map[string]string{"certificate_chain": "pem"}},
		{"result", api.AgentResultAnswer{OK: true}, map[string]bool{"ok": true}},
	} {
		got, _ := json.Marshal(c.got)
		want, _ := json.Marshal(c.want)
		if string(got) != string(want) {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
	}
}

// TestAgentResult checks that an agent's result reaches the queue as the agent sent it.
func TestAgentResult(t *testing.T) {
	in := api.AgentCommandResult{Status: "partial", Detail: "d", Removed: []string{"/a"}, FinishedAt: time.Unix(5, 0).UTC(),
		Paths: []api.PathResult{{Path: "/a", Outcome: "removed"}, {Path: "/b", Managed: "~/b", Outcome: "refused", Reason: "r"}}}
	got, _ := json.Marshal(agentResult(in))
	want, _ := json.Marshal(in)
	if string(got) != string(want) {
		t.Fatalf("%s, want %s", got, want)
	}
	if r := agentResult(api.AgentCommandResult{Status: "done"}); r.Paths != nil || r.Removed != nil {
		t.Fatalf("an empty result gained lists: %+v", r)
	}
}
