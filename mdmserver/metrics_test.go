package mdmserver_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/mdmserver/commands"
)

// /metrics exposes APNs push results, the command queues' states and the decision index's age,
// with values that agree with what the API shows after a push and commands on both queues.
func TestMetricsAfterPushAndCommand(t *testing.T) {
	start := time.Now()
	env := newTestEnv(t)
	env.uploadPushCert()
	dev := env.newDevice()
	var rec commands.Record
	if code := env.call("POST", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin,
		[]byte(`{"request_type":"SecurityInfo"}`), &rec); code != http.StatusAccepted {
		t.Fatalf("enqueue SecurityInfo: %d", code)
	}
	env.waitCommand(dev.UDID(), rec.UUID)

	// An agent with a lock waiting for its next poll.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	code, agent := env.agentEnroll(env.createEnrollment("agent").Token, key, newCSR(t, key))
	if code != http.StatusCreated {
		t.Fatalf("agent enroll: %d", code)
	}
	if code := env.call("POST", "/api/v1/devices/"+agent.DeviceID+"/lock", env.Admin, []byte(`{"reason":"left on the bus"}`), nil); code != http.StatusAccepted {
		t.Fatalf("agent lock: %d", code)
	}

	// Every Apple command the API lists (the enrollment's queries and ours) has a final answer.
	var states map[string]float64
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct{ Commands []commands.Record }
		env.call("GET", "/api/v1/devices/"+dev.UDID()+"/commands", env.Admin, nil, &list)
		states = map[string]float64{}
		final := true
		for _, c := range list.Commands {
			states[string(c.State)]++
			final = final && c.State.Final()
		}
		if final && len(list.Commands) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commands not answered: %+v", list.Commands)
		}
		time.Sleep(20 * time.Millisecond)
	}

	m := apitest.Metrics(t, env.Client, env.URL+"/metrics")
	for _, st := range commands.States {
		sample := `hale_commands{queue="apple",state="` + string(st) + `"}`
		if got, ok := m[sample]; !ok || got != states[string(st)] {
			t.Errorf("%s = %v (present %v), the API lists %v", sample, got, ok, states[string(st)])
		}
	}
	if got := m[`hale_commands{queue="agent",state="queued"}`]; got != 1 {
		t.Errorf(`hale_commands{queue="agent",state="queued"} = %v, want 1`, got)
	}
	if got := m[`hale_apns_pushes_total{result="sent"}`]; got < 1 {
		t.Errorf("pushes sent = %v, want at least our command's", got)
	}
	for _, r := range []string{"failed", "rejected", "no_push_cert"} {
		sample := `hale_apns_pushes_total{result="` + r + `"}`
		if got, ok := m[sample]; !ok || got != 0 {
			t.Errorf("%s = %v (present %v), want 0", sample, got, ok)
		}
	}
	if m["hale_decision_index_loaded"] != 1 || m["hale_decision_index_devices"] != 2 {
		t.Errorf("index loaded %v, devices %v; want 1 and 2", m["hale_decision_index_loaded"], m["hale_decision_index_devices"])
	}
	update, load := m["hale_decision_index_update_age_seconds"], m["hale_decision_index_load_age_seconds"]
	if update < 0 || update > load || load > time.Since(start).Seconds() {
		t.Errorf("index ages: update %vs, load %vs; want 0 ≤ update ≤ load ≤ %vs", update, load, time.Since(start).Seconds())
	}
}
