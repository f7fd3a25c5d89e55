package e2e

import (
	"crypto/tls"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/apitest"
	"github.com/halemdm/hale/internal/pgtest"
)

// Two primaries serve one PostgreSQL database at once, each with a copy of the first one's data
// directory, as two machines behind a load balancer: what one writes the other answers within a
// second, one of them runs the cluster's background work, a wipe ordered on both at once is
// queued once. When A is killed with SIGKILL in the middle of a burst of reports and just after
// a wipe, B carries on: every report A acknowledged is there, the wipe is queued once, and B
// takes the background work over.
func TestTwoPrimaries(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	bin := buildBinary(t, "mdmserver")
	a := startPrimary(t, bin, dsn)
	it, security, access := a.token("it"), a.token("security"), a.token("access")
	a.mustCall("PUT", "/api/v1/policies/agents", it, "encryption:\n  required: true\nreporting:\n  max_age: 15m\ngrace: 24h\n", 200, nil)
	a.mustCall("PUT", "/api/v1/assignments", it, `{"target":{"kind":"default"},"policy":"agents"}`, 200, nil)
	b := &accServer{t: t, bin: bin, addr: freeAddr(t), data: copyDataDir(t, a.data), env: a.env}
	b.start()
	const leader = "background lease taken"
	waitFor(t, 10*time.Second, "A to run the background work", func() bool { return strings.Contains(a.proc.output(), leader) })
	if strings.Contains(b.proc.output(), leader) {
		t.Fatal("both servers run the background work")
	}

	// Enrolled on A, reporting to B, locked on B: A follows within a second each time.
	ids := make([]string, 5)
	certs := make([]tls.Certificate, len(ids))
	for i := range ids {
		certs[i], ids[i] = enrollDevice(t, a.server, it)
		reportEncrypted(t, b.server, b.mtlsClient(certs[i]))
		waitAnswer(t, a, access, ids[i], true, 5*time.Second)
	}
	var lags []time.Duration
	for _, id := range ids[:3] {
		b.mustCall("POST", "/api/v1/devices/"+id+"/lock", security, `{"reason":"left on the bus"}`, 202, nil)
		lags = append(lags, waitAnswer(t, a, access, id, false, 5*time.Second))
	}
	slices.Sort(lags)
	t.Logf("lock on B to deny on A: %v", lags)
	if lags[len(lags)-1] > time.Second {
		t.Errorf("a lock on B took %v to reach A, want under 1s", lags[len(lags)-1])
	}

	// An agent waiting for its commands on A gets the lock ordered on B at once, not at the end
	// of its long poll.
	polled := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		var cmds struct{ Commands []struct{ Type string } }
		apitest.Do(t, a.mtlsClient(certs[3]), "GET", a.url+"/agent/v1/commands?wait=25s", "", nil, &cmds)
		polled <- time.Since(start)
	}()
	time.Sleep(300 * time.Millisecond) // the poll is waiting
	b.mustCall("POST", "/api/v1/devices/"+ids[3]+"/lock", security, `{"reason":"left in the canteen"}`, 202, nil)
	if took := <-polled; took > 5*time.Second {
		t.Errorf("the agent polling A got the lock ordered on B after %v", took)
	}

	// A wipe ordered on both at once: one is accepted, the other refused, one command queued.
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i, s := range []*accServer{a, b} {
		wg.Go(func() {
			codes[i], _ = s.rawBody("POST", "/api/v1/devices/"+ids[4]+"/wipe", security, `{"reason":"stolen from ward 7","mode":"selective"}`)
		})
	}
	wg.Wait()
	if slices.Sort(codes); !slices.Equal(codes, []int{202, 409}) {
		t.Errorf("two wipes at once on A and B: %v, want one 202 and one 409", codes)
	}
	if n := countWipes(t, b, certs[4], ""); n != 1 {
		t.Errorf("%d wipes queued after two at once, want 1", n)
	}

	// The kill.
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
	// B never stopped serving; PostgreSQL frees the dead holder's lease with its connection.
	waitFor(t, 30*time.Second, "B to take the background work over", func() bool { return strings.Contains(b.proc.output(), leader) })
	t.Logf("B runs the background work %v after the kill; %d reports acknowledged by A", time.Since(killed).Round(time.Millisecond), res.acked)
	for i, d := range burst {
		if res.last[i].IsZero() {
			continue
		}
		var ans accAccess
		b.mustCall("GET", "/access/v1/devices/"+d.id, access, "", 200, &ans)
		if ans.Posture == nil || ans.Posture.DiskEncrypted == nil || ans.Posture.DiskEncrypted.ObservedAt.Before(res.last[i]) {
			t.Errorf("device %s lost a report A acknowledged (last acknowledged %s)", d.id, res.last[i])
		}
	}
	if n := countWipes(t, b, lost, wipe.CommandID); n != 1 {
		t.Fatalf("%d wipes queued for the lost device on B after the kill, want 1", n)
	}
}

// countWipes returns how many wipes the device with cert finds queued on s; with want set,
// every one must be that command.
func countWipes(t *testing.T, s *accServer, cert tls.Certificate, want string) int {
	t.Helper()
	var cmds struct {
		Commands []struct{ ID, Type, State string }
	}
	if code := apitest.Do(t, s.mtlsClient(cert), "GET", s.url+"/agent/v1/commands", "", nil, &cmds); code != http.StatusOK {
		t.Fatalf("the device's commands on %s: %d", s.addr, code)
	}
	n := 0
	for _, c := range cmds.Commands {
		if c.Type == "wipe" {
			n++
			if want != "" && c.ID != want {
				t.Errorf("wipe %s, want %s", c.ID, want)
			}
		}
	}
	return n
}
