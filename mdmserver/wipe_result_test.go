package mdmserver_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/inventory"
)

// A selective wipe that left managed data behind (a path refused) is partial: the device is not
// called wiped, stays denied as wipe_incomplete (across a restart), keeps its identity, and a
// new wipe may be ordered; when that one removes everything, the device is wiped.
func TestPartialAgentWipeLeavesDeviceDeniedNotWiped(t *testing.T) {
	env := newTestEnv(t)
	security := env.token("security")
	id, agent := env.enrolledAgent()
	devURL := "/api/v1/devices/" + id.DeviceID
	wipe := []byte(`{"reason":"stolen","mode":"selective"}`)
	var first securityAnswer
	if code := env.call("POST", devURL+"/wipe", security, wipe, &first); code != 202 {
		t.Fatalf("wipe: %d", code)
	}
	post := func(cmdID string, res any) int {
		return apitest.Do(t, agent, "POST", env.URL+"/agent/v1/commands/"+cmdID+"/result", "", res, nil)
	}
	// Hostile or malformed results are refused and change nothing.
	for _, bad := range []map[string]any{
		{"status": "done", "paths": []map[string]string{{"path": "/x", "outcome": "vanished"}}},
		{"status": "done", "paths": []map[string]string{{"path": "", "outcome": "removed"}}},
		{"status": "maybe"},
	} {
		if code := post(first.CommandID, bad); code != 400 {
			t.Fatalf("result %v: %d, want 400", bad, code)
		}
	}
	// The agent says done but lists a refused path: the paths are the evidence, so it is partial.
	home := "/root/.local/share/securetext"
	res := map[string]any{"status": "done", "detail": "removed 1 of 2", "removed": []string{"/home/alice/.local/share/securetext"},
		"paths": []map[string]string{
			{"path": "/home/alice/.local/share/securetext", "managed": "~/.local/share/securetext", "outcome": "removed"},
			{"path": home, "managed": "~/.local/share/securetext", "outcome": "refused", "reason": "outside the wipe roots"},
		}}
	if code := post(first.CommandID, res); code != 200 {
		t.Fatalf("partial result: %d", code)
	}

	check := func(when string) {
		t.Helper()
		var d inventory.Device
		env.call("GET", devURL, env.Admin, nil, &d)
		if d.State == inventory.StateWiped {
			t.Fatalf("%s: the device is called wiped after a partial wipe", when)
		}
		a := env.access(env.Admin, id.DeviceID)
		if a.Allow || a.State != "wipe_incomplete" || !slices.Contains(a.ReasonCodes(), "wipe_incomplete") || slices.Contains(a.ReasonCodes(), "device_wiped") {
			t.Fatalf("%s: access %+v", when, a)
		}
		var cmd agentcmd.Command
		env.call("GET", devURL+"/commands/"+first.CommandID, env.Admin, nil, &cmd)
		if cmd.State != agentcmd.StatePartial || cmd.Result == nil || cmd.Result.Status != agentcmd.ResultPartial ||
			len(cmd.Result.Paths) != 2 || cmd.Result.Paths[1].Outcome != agentcmd.OutcomeRefused || cmd.Result.Paths[1].Reason == "" {
			t.Fatalf("%s: command %+v", when, cmd)
		}
	}
	check("after the result")
	var page struct{ Entries []audit.Entry }
	env.call("GET", "/api/v1/audit?limit=500&target="+id.DeviceID, env.Admin, nil, &page)
	var result, incomplete *audit.Entry
	for i, e := range page.Entries {
		switch e.Action {
		case "command.result":
			result = &page.Entries[i]
		case "device.wipe_incomplete":
			incomplete = &page.Entries[i]
		case "device.wiped":
			t.Fatalf("device.wiped on the record after a partial wipe: %+v", e)
		}
	}
	if result == nil || result.Outcome != audit.OutcomeError || result.Details["state"] != "partial" || result.Details["refused"] != "1" ||
		result.Details["removed"] != "1" || !strings.Contains(result.Details["left_behind"], home+": outside the wipe roots") {
		t.Fatalf("command.result entry: %+v", result)
	}
	if incomplete == nil || incomplete.Details["command_id"] != first.CommandID {
		t.Fatalf("device.wipe_incomplete entry: %+v", incomplete)
	}
	// The agent keeps its identity: the certificate still works, so a new wipe can reach it.
	if code := apitest.Do(t, agent, "GET", env.URL+"/agent/v1/nonce", "", nil, nil); code != 200 {
		t.Fatalf("the device's certificate after a partial wipe: %d", code)
	}

	env.Restart()
	agent.CloseIdleConnections()
	check("after a restart")

	// A new wipe may be ordered to finish the job; it removes everything and the device is wiped.
	var second securityAnswer
	if code := env.call("POST", devURL+"/wipe", security, wipe, &second); code != 202 || second.CommandID == first.CommandID {
		t.Fatalf("second wipe: %d %+v", code, second)
	}
	if a := env.access(env.Admin, id.DeviceID); a.Allow || a.State != "wipe_pending" {
		t.Fatalf("access during the second wipe: %+v", a)
	}
	done := map[string]any{"status": "done", "paths": []map[string]string{{"path": home, "outcome": "removed"}}}
	if code := post(second.CommandID, done); code != 200 {
		t.Fatalf("second result: %d", code)
	}
	var d inventory.Device
	env.call("GET", devURL, env.Admin, nil, &d)
	a := env.access(env.Admin, id.DeviceID)
	if d.State != inventory.StateWiped || a.Allow || a.State != "wiped" || slices.Contains(a.ReasonCodes(), "wipe_incomplete") {
		t.Fatalf("after the second wipe: device %s, access %+v", d.State, a)
	}
	env.Restart()
	if a := env.access(env.Admin, id.DeviceID); a.State != "wiped" {
		t.Fatalf("after the second wipe and a restart: %+v", a)
	}
}

// A wipe the agent could not run at all (failed) is not a wipe either: wipe_incomplete, and a
// new wipe may be ordered.
func TestFailedAgentWipeCanBeOrderedAgain(t *testing.T) {
	env := newTestEnv(t)
	security := env.token("security")
	id, agent := env.enrolledAgent()
	wipe := []byte(`{"reason":"stolen","mode":"selective"}`)
	var ans securityAnswer
	env.call("POST", "/api/v1/devices/"+id.DeviceID+"/wipe", security, wipe, &ans)
	res := map[string]string{"status": "failed", "detail": "the wipe command lists no managed data"}
	if code := apitest.Do(t, agent, "POST", env.URL+"/agent/v1/commands/"+ans.CommandID+"/result", "", res, nil); code != 200 {
		t.Fatalf("result: %d", code)
	}
	if a := env.access(env.Admin, id.DeviceID); a.Allow || a.State != "wipe_incomplete" {
		t.Fatalf("access: %+v", a)
	}
	if code := env.call("POST", "/api/v1/devices/"+id.DeviceID+"/wipe", security, wipe, nil); code != 202 {
		t.Fatalf("a new wipe after a failed one: %d", code)
	}
}
