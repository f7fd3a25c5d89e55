package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/pgtest"
)

// On PostgreSQL one primary serves the database; a standby started beside it waits, and takes
// over when the primary is killed with SIGKILL in the middle of a burst of reports and just
// after a wipe was queued: every report the primary acknowledged is there, and the wipe is queued
// once, for the device to take from the new primary.
func TestStandbyTakesOverAfterKill(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	bin := buildBinary(t, "mdmserver")
	a := startPrimary(t, bin, dsn)
	it, security, access := a.token("it"), a.token("security"), a.token("access")

	// A second primary without --standby refuses to start beside the first.
	second := &accServer{t: t, bin: bin, addr: freeAddr(t), data: filepath.Join(t.TempDir(), "data"), env: a.env}
	p := startProcessEnv(t, second.env, bin, "serve", "--listen", second.addr, "--data", a.data)
	if err := p.wait(60 * time.Second); err == nil || !strings.Contains(p.output(), "another mdmserver is serving this database") {
		t.Fatalf("a second primary: %v\n%s", err, accLastLines(p.output(), 20))
	}

	// The standby: a copy of the primary's data directory on "another machine", waiting.
	b := &accServer{t: t, bin: bin, addr: freeAddr(t), data: copyDataDir(t, a.data), env: a.env, args: []string{"--standby"}}
	b.launch()
	waitFor(t, 30*time.Second, "the standby to wait for the lease", func() bool {
		return strings.Contains(b.proc.output(), "waiting to take over")
	})
	if healthy(b.addr) {
		t.Fatal("the standby serves while the primary holds the lease")
	}

	lost, lostID := enrollDevice(t, a.server, it)
	burst := make([]accBurstDevice, accBurstDevices)
	for i := range burst {
		cert, id := enrollDevice(t, a.server, it)
		burst[i] = accBurstDevice{id: id, client: a.mtlsClient(cert)}
	}
	var wipe struct {
		CommandID string `json:"command_id"`
	}
	killed := time.Now()
	res := accRunBurst(a.url, burst, func() {
		a.mustCall("POST", "/api/v1/devices/"+lostID+"/wipe", security, `{"reason":"stolen from ward 7","mode":"selective"}`, 202, &wipe)
		killed = time.Now()
		a.kill()
	})
	for _, e := range res.errors {
		t.Errorf("burst: %s", e)
	}
	if res.acked == accBurstDevices*accBurstPerDevice {
		t.Fatal("every report was acknowledged before the kill: the kill interrupted nothing")
	}

	// PostgreSQL frees a dead holder's lease with its connection; the standby takes it.
	b.attach(60 * time.Second)
	t.Logf("standby serving %v after the kill; %d reports acknowledged before it", time.Since(killed).Round(time.Millisecond), res.acked)
	for i, d := range burst {
		if res.last[i].IsZero() {
			continue
		}
		var ans accAccess
		b.mustCall("GET", "/access/v1/devices/"+d.id, access, "", 200, &ans)
		if ans.Posture == nil || ans.Posture.DiskEncrypted == nil || ans.Posture.DiskEncrypted.ObservedAt.Before(res.last[i]) {
			t.Errorf("device %s lost an acknowledged report across the failover (last acknowledged %s)", d.id, res.last[i])
		}
	}
	var cmds struct {
		Commands []struct{ ID, Type, State string }
	}
	if code := apitest.Do(t, b.mtlsClient(lost), "GET", b.url+"/agent/v1/commands", "", nil, &cmds); code != 200 {
		t.Fatalf("the lost device's commands from the new primary: %d", code)
	}
	wipes := 0
	for _, c := range cmds.Commands {
		if c.Type == "wipe" {
			wipes++
			if c.ID != wipe.CommandID {
				t.Errorf("wipe %s, want %s", c.ID, wipe.CommandID)
			}
		}
	}
	if wipes != 1 {
		t.Fatalf("%d wipes queued for the lost device after the failover, want 1: %+v", wipes, cmds.Commands)
	}
}
