package mdmserver_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// tokenAs creates, with the creator token, a token named name in role for person ("": the
// creator's own person, as the API defaults it) and returns its secret.
func (env *testEnv) tokenAs(creator, name, role, person string) string {
	env.t.Helper()
	body := map[string]string{"name": name, "role": role}
	if person != "" {
		body["person"] = person
	}
	var tok struct{ Token string }
	if code := env.call("POST", "/api/v1/tokens", creator, mustJSON(env.t, body), &tok); code != 201 {
		env.t.Fatalf("create %s token %q for %q: %d", role, name, person, code)
	}
	return tok.Token
}

// decide posts a decision on an approval and returns the status and the problem's code.
func (env *testEnv) decide(approvalID, token, decision string) (int, string) {
	env.t.Helper()
	var ans struct{ Code, Detail string }
	code := env.call("POST", "/api/v1/approvals/"+approvalID, token, []byte(`{"decision":"`+decision+`"}`), &ans)
	return code, ans.Code
}

// auditEntries returns the audit entries about target, oldest first.
func (env *testEnv) auditEntries(target string) []audit.Entry {
	env.t.Helper()
	var page struct{ Entries []audit.Entry }
	if code := env.call("GET", "/api/v1/audit?limit=500&target="+target, env.Admin, nil, &page); code != 200 {
		env.t.Fatalf("audit list: %d", code)
	}
	return page.Entries
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The two-person rule counts people, not tokens (issue 23.1). An admin who minted a security
// token for themselves before requesting a wipe cannot approve it with that token; nor can a
// token made, through a second admin identity, for a made-up person; nor a second token of the
// requester's own person under the same name. A genuine second person still can, and the
// audit log names the people.
func TestTwoPersonRuleCountsPeople(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	env.uploadPushCert()
	mac := env.newDevice()

	// Every token is made before any request, so the "token created before the request" check
	// cannot be what refuses them.
	selfMinted := env.tokenAs(env.Admin, "admin-sec", "security", "") // the admin's own person

	var held securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+mac.UDID()+"/wipe", env.Admin, []byte(`{"reason":"lost","mode":"full"}`), &held); code != 202 || held.ApprovalID == "" {
		t.Fatalf("admin's held wipe: %d %+v", code, held)
	}
	for _, decision := range []string{"approve", "reject"} {
		if code, problemCode := env.decide(held.ApprovalID, selfMinted, decision); code != http.StatusForbidden || problemCode != "same-person" {
			t.Fatalf("admin deciding (%s) their own wipe with a security token minted for themselves: %d %q, want 403 same-person",
				decision, code, problemCode)
		}
	}

	// People named by the admin. "xavier" is made up, by a second admin identity the bootstrap
	// admin made first: the bootstrap admin still created both tokens.
	alex := env.tokenAs(env.Admin, "alex-admin", "admin", "alex")
	viaAlex := env.tokenAs(alex, "night-sec", "security", "xavier")
	dana1 := env.tokenAs(env.Admin, "secops", "security", "dana")
	dana2 := env.tokenAs(env.Admin, "secops", "security", "dana")
	eli := env.tokenAs(env.Admin, "secops-eli", "security", "eli")

	agentID, _ := env.enrolledAgent()
	var held3 securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+agentID.DeviceID+"/wipe", env.Admin, []byte(`{"reason":"lost","mode":"selective"}`), &held3); code != 202 || held3.ApprovalID == "" {
		t.Fatalf("admin's held agent wipe: %d %+v", code, held3)
	}
	if code, problemCode := env.decide(held3.ApprovalID, viaAlex, "approve"); code != http.StatusForbidden || problemCode != "token-creator" {
		t.Fatalf("a token the requester made (through another admin token) for a made-up person: %d %q, want 403 token-creator", code, problemCode)
	}
	if code, problemCode := env.decide(held3.ApprovalID, eli, "approve"); code != http.StatusForbidden || problemCode != "token-creator" {
		t.Fatalf("a token the requester made for someone else: %d %q, want 403 token-creator", code, problemCode)
	}

	// The refusal says why, naming the person.
	var refusal struct{ Detail string }
	env.call("POST", "/api/v1/approvals/"+held3.ApprovalID, eli, []byte(`{}`), &refusal)
	if !strings.Contains(refusal.Detail, `requester "bootstrap" created the approver's token`) {
		t.Errorf("refusal detail: %q", refusal.Detail)
	}

	mac2 := env.newDevice()
	var held2 securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+mac2.UDID()+"/wipe", dana1, []byte(`{"reason":"stolen","mode":"full"}`), &held2); code != 202 || held2.ApprovalID == "" {
		t.Fatalf("dana's held wipe: %d %+v", code, held2)
	}
	if code, problemCode := env.decide(held2.ApprovalID, dana2, "approve"); code != http.StatusForbidden || problemCode != "same-person" {
		t.Fatalf("a second token of the same person, same name: %d %q, want 403 same-person", code, problemCode)
	}
	var pending struct{ Approvals []struct{ ID string } }
	env.call("GET", "/api/v1/approvals?state=pending", env.Admin, nil, &pending)
	if len(pending.Approvals) != 3 {
		t.Fatalf("refused decisions changed the requests: %+v", pending.Approvals)
	}

	var approved struct {
		State           string
		DeciderPerson   string `json:"decider_person"`
		RequesterPerson string `json:"requester_person"`
		Command         *securityAnswer
	}
	if code := env.call("POST", "/api/v1/approvals/"+held2.ApprovalID, eli, []byte(`{"decision":"approve"}`), &approved); code != 200 ||
		approved.State != "approved" || approved.Command == nil || approved.DeciderPerson != "eli" || approved.RequesterPerson != "dana" {
		t.Fatalf("a genuine second person: %d %+v", code, approved)
	}
	if rec := env.waitCommand(mac2.UDID(), approved.Command.CommandID); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice after the second person's approval: %+v", rec.Record)
	}

	// The audit log names the person beside each token.
	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+mac2.UDID(), env.Admin, nil, &d)
	people := map[string][]string{}
	for _, e := range env.auditEntries(d.ID) {
		people[e.Action+"/"+e.Outcome] = append(people[e.Action+"/"+e.Outcome], e.Person)
	}
	for key, want := range map[string]string{"approval.request/ok": "dana", "approval.approve/ok": "eli", "device.wipe/ok": "eli"} {
		if !slices.Contains(people[key], want) {
			t.Errorf("audit %s: people %v, want %s", key, people[key], want)
		}
	}
}

// Tokens stored before tokens had people get, at start, a person named after them (issue
// 23.1's migration): two security tokens that share a name are then one person, and cannot
// approve each other's wipes. Running the migration again changes nothing.
func TestTokensMigratedToPeople(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	first := env.tokenAs(env.Admin, "secops", "security", "first")
	second := env.tokenAs(env.Admin, "secops", "security", "second")

	// Make the stored records what an earlier release wrote: no person, no creator link.
	env.Stop()
	db, err := bbolt.Open(filepath.Join(env.Config.DataDir, "hale.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("api_tokens"))
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec map[string]any
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			delete(rec, "person")
			delete(rec, "creator_token_id")
			delete(rec, "creator_person")
			nv, _ := json.Marshal(rec)
			if err := b.Put(bytes.Clone(k), nv); err != nil {
				return err
			}
		}
		return nil
	})
	if closeErr := db.Close(); err != nil || closeErr != nil {
		t.Fatal(err, closeErr)
	}

	list := func() map[string][]string {
		env.t.Helper()
		var ans struct {
			Tokens []struct {
				Name, Person    string
				CreatedByPerson string `json:"created_by_person"`
			}
		}
		if code := env.call("GET", "/api/v1/tokens", env.Admin, nil, &ans); code != 200 {
			t.Fatalf("tokens list: %d", code)
		}
		out := map[string][]string{}
		for _, tok := range ans.Tokens {
			out[tok.Name] = append(out[tok.Name], tok.Person+"<"+tok.CreatedByPerson)
		}
		return out
	}
	env.Restart() // stopped already: this starts it on the earlier release's records
	got := list()
	want := map[string][]string{"bootstrap": {"bootstrap<"}, "secops": {"secops<bootstrap", "secops<bootstrap"}}
	if !mapsEqual(got, want) {
		t.Fatalf("tokens after the migration: %v, want %v", got, want)
	}
	env.Restart()
	if again := list(); !mapsEqual(again, want) {
		t.Fatalf("tokens after a second start: %v, want %v", again, want)
	}

	id, _ := env.enrolledAgent()
	var held securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/wipe", first, []byte(`{"reason":"lost","mode":"selective"}`), &held); code != 202 || held.ApprovalID == "" {
		t.Fatalf("held wipe: %d %+v", code, held)
	}
	if code, problemCode := env.decide(held.ApprovalID, second, "approve"); code != http.StatusForbidden || problemCode != "same-person" {
		t.Fatalf("two migrated tokens sharing a name: %d %q, want 403 same-person", code, problemCode)
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// Person names are checked, never trimmed or rewritten.
func TestTokenPersonValidated(t *testing.T) {
	env := newTestEnv(t)
	for _, person := range []string{" dana", "dana ", "da\nna", "da\u202ena", strings.Repeat("p", 129), "da\u200bna"} {
		body := mustJSON(t, map[string]string{"name": "x", "role": "security", "person": person})
		if code := env.call("POST", "/api/v1/tokens", env.Admin, body, nil); code != 400 {
			t.Errorf("person %q: %d, want 400", person, code)
		}
	}
	var tok struct{ Person string }
	if code := env.call("POST", "/api/v1/tokens", env.Admin, []byte(`{"name":"x","role":"it","person":"Dr. Dana Ng-Østergaard"}`), &tok); code != 201 || tok.Person != "Dr. Dana Ng-Østergaard" {
		t.Fatalf("a valid person: %d %+v", code, tok)
	}
}

// Under two_person_wipe_groups ["*"] an agent's selective wipe waits for a second person too
// (issue 23.3), and once approved it is carried out as a direct one is: the agent gets the
// wipe with the policy's managed data, and its result marks the device wiped.
func TestHeldAgentSelectiveWipe(t *testing.T) {
	env := newTestEnv(t, func(c *mdmserver.Config) { c.TwoPersonWipeGroups = []string{"*"} })
	it, first, second := env.token("it"), env.token("security"), env.token("security")
	env.call("PUT", "/api/v1/policies/p", it, []byte("reporting:\n  max_age: 15m\nmanaged_data:\n  linux: [/srv/securetext]\n"), nil)
	env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"group","name":"icu"},"policy":"p"}`), nil)
	id, agent := env.enrolledAgent()
	devURL := "/api/v1/devices/" + id.DeviceID

	var held securityAnswer
	if code := env.call("POST", devURL+"/wipe", first, []byte(`{"reason":"reported stolen","mode":"selective"}`), &held); code != 202 ||
		held.State != "pending_approval" || held.ApprovalID == "" || held.CommandID != "" {
		t.Fatalf("selective wipe under two_person_wipe_groups [*]: %d %+v, want pending_approval", code, held)
	}
	var got struct{ Commands []agentcmd.Command }
	apitest.Do(t, agent, "GET", env.URL+"/agent/v1/commands", "", nil, &got)
	if len(got.Commands) != 0 {
		t.Fatalf("the agent got a command before the approval: %+v", got.Commands)
	}
	if code, problemCode := env.decide(held.ApprovalID, first, "approve"); code != http.StatusForbidden || problemCode != "same-person" {
		t.Fatalf("requester approving: %d %q", code, problemCode)
	}

	var approved struct {
		State   string
		Command *securityAnswer
	}
	if code := env.call("POST", "/api/v1/approvals/"+held.ApprovalID, second, []byte(`{"decision":"approve"}`), &approved); code != 200 ||
		approved.Command == nil || approved.Command.CommandID == "" || approved.Command.DeviceState != "wipe_pending" {
		t.Fatalf("second person's approval: %d %+v", code, approved)
	}
	apitest.Do(t, agent, "GET", env.URL+"/agent/v1/commands", "", nil, &got)
	if len(got.Commands) != 1 || got.Commands[0].ID != approved.Command.CommandID || got.Commands[0].Type != agentcmd.TypeWipe ||
		got.Commands[0].Mode != "selective" || !slices.Equal(got.Commands[0].ManagedData, []string{"/srv/securetext"}) {
		t.Fatalf("agent commands after the approval: %+v", got.Commands)
	}
	if a := env.access(env.Admin, id.DeviceID); a.Allow || !slices.Contains(a.ReasonCodes(), "wipe_pending") {
		t.Fatalf("access while the approved wipe is on its way: %+v", a)
	}
	res := map[string]any{"status": "done", "removed": []string{"/srv/securetext"}}
	if code := apitest.Do(t, agent, "POST", env.URL+"/agent/v1/commands/"+approved.Command.CommandID+"/result", "", res, nil); code != 200 {
		t.Fatalf("wipe result: %d", code)
	}
	var d inventory.Device
	env.call("GET", devURL, env.Admin, nil, &d)
	if d.State != inventory.StateWiped {
		t.Fatalf("device after the approved wipe: %s", d.State)
	}
	actions := env.auditActions(id.DeviceID)
	for _, want := range []string{"approval.request", "approval.approve", "device.wipe"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit trail lacks %s: %v", want, actions)
		}
	}
}

// Hale makes its own request ID for every request (issue 23.4): a client's X-Request-Id, even
// one copied from another audit entry, never becomes an entry's request_id. It is kept,
// bounded and sanitised, as client_request_id; the response header and problem answers carry
// Hale's ID.
func TestClientRequestIDNeverTheAuditID(t *testing.T) {
	env := newTestEnv(t)
	create := func(clientID string, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", env.URL+"/api/v1/tokens", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+env.Admin)
		if clientID != "" {
			req.Header.Set("X-Request-Id", clientID)
		}
		resp, err := env.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp, buf.Bytes()
	}
	entryOf := func(body []byte) audit.Entry {
		t.Helper()
		var tok struct{ ID string }
		if err := json.Unmarshal(body, &tok); err != nil || tok.ID == "" {
			t.Fatalf("token answer %s: %v", body, err)
		}
		entries := env.auditEntries(tok.ID)
		if len(entries) != 1 || entries[0].Action != "token.create" {
			t.Fatalf("audit entries of token %s: %+v", tok.ID, entries)
		}
		return entries[0]
	}

	resp, body := create("", `{"name":"a","role":"auditor"}`)
	victim := entryOf(body)
	if victim.RequestID == "" || victim.RequestID != resp.Header.Get("X-Request-Id") || victim.ClientRequestID != "" {
		t.Fatalf("an entry without a client ID: %+v, header %q", victim, resp.Header.Get("X-Request-Id"))
	}

	// A client repeats that entry's ID.
	resp, body = create(victim.RequestID, `{"name":"b","role":"auditor"}`)
	e := entryOf(body)
	hale := resp.Header.Get("X-Request-Id")
	if e.RequestID == victim.RequestID || e.RequestID != hale || e.ClientRequestID != victim.RequestID {
		t.Fatalf("client-chosen X-Request-Id %q: entry request_id %q client_request_id %q, response header %q",
			victim.RequestID, e.RequestID, e.ClientRequestID, hale)
	}

	// A hostile one is bounded and made safe to log; the entry still has Hale's ID.
	hostile := "id\tforged\u202e" + strings.Repeat("x", 300) // tab and a bidi override: Go's client sends both
	resp, body = create(hostile, `{"name":"c","role":"auditor"}`)
	e = entryOf(body)
	if e.RequestID != resp.Header.Get("X-Request-Id") || len(e.ClientRequestID) != 128 ||
		strings.ContainsFunc(e.ClientRequestID, func(r rune) bool { return r < '!' || r > '~' }) || !strings.HasPrefix(e.ClientRequestID, "id?forged?") {
		t.Fatalf("hostile client ID: request_id %q (header %q), client_request_id %q", e.RequestID, resp.Header.Get("X-Request-Id"), e.ClientRequestID)
	}

	// A problem answer names Hale's ID too.
	resp, body = create("mine", `{"name":"","role":"auditor"}`)
	var p struct {
		RequestID string `json:"request_id"`
	}
	json.Unmarshal(body, &p)
	if resp.StatusCode != 400 || p.RequestID == "" || p.RequestID == "mine" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Fatalf("problem answer: %d request_id %q, header %q", resp.StatusCode, p.RequestID, resp.Header.Get("X-Request-Id"))
	}
}
