package mdmserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/applemdm"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// securityAnswer is the answer to lock, lost mode and wipe, as the tests decode it.
type securityAnswer = api.SecurityAnswer

// tokenPeople numbers the people env.token makes tokens for.
var tokenPeople atomic.Int64

// token creates a token with role for a person of its own, as an admin does for each member of
// staff: two tokens from token are two people.
func (env *testEnv) token(role string) string {
	env.t.Helper()
	var tok struct{ Token string }
	person := fmt.Sprintf("%s-person-%d", role, tokenPeople.Add(1))
	if code := env.call("POST", "/api/v1/tokens", env.Admin, []byte(`{"name":"`+role+`-desk","role":"`+role+`","person":"`+person+`"}`), &tok); code != 201 {
		env.t.Fatalf("create %s token: %d", role, code)
	}
	return tok.Token
}

// enrolledAgent enrolls an agent identity over the API and returns it with its mTLS client.
func (env *testEnv) enrolledAgent() (agentIdentity, *http.Client) {
	env.t.Helper()
	e := env.createEnrollment("agent")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	code, id := env.agentEnroll(e.Token, key, newCSR(env.t, key))
	if code != http.StatusCreated {
		env.t.Fatalf("agent enroll: %d", code)
	}
	return id, env.mtlsClient(id)
}

func TestAgentLockAndSelectiveWipe(t *testing.T) {
	env := newTestEnv(t)
	it, security := env.token("it"), env.token("security")
	id, agent := env.enrolledAgent()
	devURL := "/api/v1/devices/" + id.DeviceID

	// The agent is long-polling when the lock is ordered: it gets it at once.
	polled := make(chan []agentcmd.Command, 1)
	go func() {
		var got struct{ Commands []agentcmd.Command }
		apitest.Do(t, agent, "GET", env.URL+"/agent/v1/commands?wait=20s", "", nil, &got)
		polled <- got.Commands
	}()
	time.Sleep(100 * time.Millisecond)
	var ans securityAnswer
	if code := env.call("POST", devURL+"/lock", it, []byte(`{"reason":"left on the bus"}`), &ans); code != 202 || ans.DeviceState != "locked" {
		t.Fatalf("lock as IT: %d %+v", code, ans)
	}
	select {
	case cmds := <-polled:
		if len(cmds) != 1 || cmds[0].Type != agentcmd.TypeLock || cmds[0].ID != ans.CommandID {
			t.Fatalf("long poll got %+v", cmds)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lock did not reach the long-polling agent")
	}
	if code := apitest.Do(t, agent, "POST", env.URL+"/agent/v1/commands/"+ans.CommandID+"/result", "", map[string]string{"status": "done"}, nil); code != 200 {
		t.Fatalf("lock result: %d", code)
	}

	// Wipe: IT may not, security may; a repeated request with the same Idempotency-Key is one wipe.
	wipe := []byte(`{"reason":"reported stolen","mode":"selective"}`)
	if code := env.call("POST", devURL+"/wipe", it, wipe, nil); code != http.StatusForbidden {
		t.Fatalf("wipe as IT: %d", code)
	}
	if code := env.call("POST", devURL+"/wipe", security, []byte(`{"reason":"x","mode":"full"}`), nil); code != 400 {
		t.Fatalf("full wipe of an agent: %d", code)
	}
	wipeReq := func() securityAnswer {
		req, _ := http.NewRequest("POST", env.URL+devURL+"/wipe", bytes.NewReader(wipe))
		req.Header.Set("Authorization", "Bearer "+security)
		req.Header.Set("Idempotency-Key", "incident-4711")
		resp, err := env.Client.Do(req)
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("wipe: %v %v", resp.StatusCode, err)
		}
		defer resp.Body.Close()
		var a securityAnswer
		json.NewDecoder(resp.Body).Decode(&a)
		return a
	}
	first, second := wipeReq(), wipeReq()
	if first.CommandID != second.CommandID || first.DeviceState != "wipe_pending" {
		t.Fatalf("idempotent wipe: %+v then %+v", first, second)
	}
	var got struct{ Commands []agentcmd.Command }
	apitest.Do(t, agent, "GET", env.URL+"/agent/v1/commands", "", nil, &got)
	if len(got.Commands) != 1 || got.Commands[0].Type != agentcmd.TypeWipe || got.Commands[0].Mode != "selective" {
		t.Fatalf("agent commands: %+v", got.Commands)
	}
	res := map[string]any{"status": "done", "removed": []string{"/srv/phi"}}
	if code := apitest.Do(t, agent, "POST", env.URL+"/agent/v1/commands/"+first.CommandID+"/result", "", res, nil); code != 200 {
		t.Fatalf("wipe result: %d", code)
	}
	var d inventory.Device
	env.call("GET", devURL, env.Admin, nil, &d)
	if d.State != inventory.StateWiped {
		t.Fatalf("device after wipe: %s", d.State)
	}
	agent.CloseIdleConnections()
	if code := apitest.Do(t, agent, "GET", env.URL+"/agent/v1/nonce", "", nil, nil); code > 0 && code < 400 {
		t.Fatalf("wiped device's certificate still works: %d", code)
	}
	if code := env.call("POST", devURL+"/wipe", security, wipe, nil); code != http.StatusConflict {
		t.Fatalf("wipe of a wiped device: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/d_00000000000000ff/wipe", security, wipe, nil); code != 404 {
		t.Fatalf("wipe of an unknown device: %d", code)
	}
}

// A simulated Apple device receives EraseDevice; its acknowledgement makes it wiped with its
// identity revoked.
func TestAppleWipe(t *testing.T) {
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()
	security := env.token("security")
	var ans securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", security,
		[]byte(`{"reason":"lost in ED","mode":"full","preserve_data_plan":true}`), &ans); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !dev.State().Erased && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !dev.State().Erased {
		t.Fatal("device never erased")
	}
	var d inventory.Device
	for time.Now().Before(deadline) {
		env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d)
		if d.State == inventory.StateWiped {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("device state after acknowledged erase: %s", d.State)
}

// An agent fetches its effective policy with an ETag and gets 304 when it has not changed.
func TestAgentPolicyETag(t *testing.T) {
	env := newTestEnv(t)
	it := env.token("it")
	_, agent := env.enrolledAgent()
	if code := apitest.Do(t, agent, "GET", env.URL+"/agent/v1/policy", "", nil, nil); code != http.StatusNotFound {
		t.Fatalf("no policy yet: %d", code)
	}
	env.call("PUT", "/api/v1/policies/p", it, []byte("reporting:\n  max_age: 15m\nmanaged_data:\n  linux: [/srv/securetext]\n"), nil)
	env.call("PUT", "/api/v1/assignments", it, []byte(`{"target":{"kind":"group","name":"icu"},"policy":"p"}`), nil)
	resp, err := agent.Get(env.URL + "/agent/v1/policy")
	if err != nil {
		t.Fatal(err)
	}
	var ap struct {
		Policy      string   `json:"policy"`
		ManagedData []string `json:"managed_data"`
	}
	json.NewDecoder(resp.Body).Decode(&ap)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" || ap.Policy != "p" || len(ap.ManagedData) != 1 {
		t.Fatalf("policy: %d etag=%q %+v", resp.StatusCode, etag, ap)
	}
	req, _ := http.NewRequest("GET", env.URL+"/agent/v1/policy", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = agent.Do(req)
	if err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("unchanged policy: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// A wipe accepted before a restart is still in force after it: the device stays denied as
// wipe_pending, and the EraseDevice still queued (no push certificate yet, so the device has not
// checked in) is delivered at its first check-in to the new server.
func TestAppleWipeSurvivesRestart(t *testing.T) {
	env := newTestEnv(t)
	// No push loop: a loop's first poll could take the erase and lose its acknowledgement to the
	// restart (the device erases itself and never resends), which is not what this tests.
	dev := env.enrollDevice()
	security := env.token("security")
	var ans securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/wipe", security, []byte(`{"reason":"lost","mode":"full"}`), &ans); code != 202 || ans.State != "queued" {
		t.Fatalf("wipe: %d %+v", code, ans)
	}

	env.Restart()
	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+dev.UDID(), env.Admin, nil, &d)
	if a := env.access(env.Admin, d.ID); a.Allow || !slices.Contains(a.ReasonCodes(), "wipe_pending") {
		t.Fatalf("after restart: %+v", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := dev.Poll(ctx); err != nil && !dev.State().Erased {
		t.Fatal(err)
	}
	if !dev.State().Erased {
		t.Fatal("the erase was not delivered after the restart")
	}
	if rec := env.waitCommand(dev.UDID(), ans.CommandID); rec.State != "acknowledged" {
		t.Fatalf("EraseDevice after restart: %+v", rec.Record)
	}
}

// Commands no device answered within command_ttl expire and leave the queue; a lock does not:
// the device gets it whenever it comes back.
func TestCommandsExpireButLocksWait(t *testing.T) {
	env := newTestEnv(t)
	// No push certificate and no push loop: commands wait for the poll the test makes.
	dev := env.enrollDevice()
	it := env.token("it")
	var query, lock struct {
		UUID string `json:"command_id"`
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", it, []byte(`{"request_type":"SecurityInfo"}`), &query); code != 202 {
		t.Fatalf("query: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/lock", it, []byte(`{"reason":"left in a taxi"}`), &lock); code != 202 {
		t.Fatalf("lock: %d", code)
	}
	// A TTL in the past expires everything unanswered so far.
	n, err := env.DispatcherForTest().Expire(context.Background(), -time.Minute, applemdm.SecurityCommand)
	if err != nil || n < 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	var rec struct{ State string }
	env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands/"+query.UUID, it, nil, &rec)
	if rec.State != "expired" {
		t.Fatalf("query after expiry: %s", rec.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range dev.Commands() {
		got = append(got, c.CommandUUID)
	}
	if !slices.Contains(got, lock.UUID) || slices.Contains(got, query.UUID) {
		t.Fatalf("the device was handed %v: want the lock %s and not the expired query %s", got, lock.UUID, query.UUID)
	}
}

// A wipe whose acknowledgement was recorded but not finished (the server stopped in between, and
// the agent's certificate may already be revoked) is finished when the server starts; a second
// wipe of a device with one on its way is refused.
func TestAcknowledgedWipeFinishedAtStart(t *testing.T) {
	env := newTestEnv(t)
	security := env.token("security")
	id, _ := env.enrolledAgent()
	wipe := []byte(`{"reason":"stolen","mode":"selective"}`)
	var ans securityAnswer
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/wipe", security, wipe, &ans); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/wipe", security, wipe, nil); code != 409 {
		t.Fatalf("second wipe: %d, want 409", code)
	}
	if _, _, err := env.AgentQueueForTest().Complete(context.Background(), id.DeviceID, ans.CommandID, agentcmd.Result{Status: agentcmd.ResultDone}); err != nil {
		t.Fatal(err)
	}
	env.Restart()
	var d inventory.Device
	env.call("GET", "/api/v1/devices/"+id.DeviceID, env.Admin, nil, &d)
	if d.State != inventory.StateWiped {
		t.Fatalf("after restart: %s", d.State)
	}
	if got := env.auditActions(id.DeviceID); !slices.Contains(got, "device.wiped") {
		t.Fatalf("no device.wiped on the record: %v", got)
	}
}
