package security_test

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage/clustertest"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// These tests run two security.Services, as two servers would, over one store: each has its own
// memory (its per-device locks), and "the other server" commits between one service's checks
// and its unit of work (a hook in the last thing the service reads before acting). The rules
// must hold all the same, from the checks inside the unit of work.

var t0 = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// hookApprovals is the approvals service with a hook run once, before the next Pending: the
// last read Order makes before a wipe's unit of work.
type hookApprovals struct {
	*approvals.Service
	mu     sync.Mutex
	before func()
}

func (h *hookApprovals) Pending(ctx context.Context, deviceID string) (*approvals.Request, error) {
	h.mu.Lock()
	fn := h.before
	h.before = nil
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
	return h.Service.Pending(ctx, deviceID)
}

// hookDevices is the inventory with hooks run once, before and after the next Get.
type hookDevices struct {
	*inventory.Service
	mu            sync.Mutex
	before, after func()
}

func (h *hookDevices) Get(ctx context.Context, id string) (*inventory.Device, error) {
	h.mu.Lock()
	before, after := h.before, h.after
	h.before, h.after = nil, nil
	h.mu.Unlock()
	if before != nil {
		before()
	}
	d, err := h.Service.Get(ctx, id)
	if after != nil {
		after()
	}
	return d, err
}

type tokenBook map[string]*tokens.Token

func (b tokenBook) Get(_ context.Context, id string) (*tokens.Token, error) {
	if t, ok := b[id]; ok {
		return t, nil
	}
	return nil, tokens.ErrNotFound
}
func (tokenBook) Creators(context.Context, *tokens.Token) ([]string, error) { return nil, nil }

// noApple: the devices here are agents; an Apple command is a test failure.
type noApple struct{ t *testing.T }

func (a noApple) Get(context.Context, string, string) (*commands.Record, error) {
	return nil, commands.ErrNotFound
}
func (a noApple) PIN(context.Context, *seal.Key, string) (string, error) {
	return "", commands.ErrNotFound
}
func (a noApple) Send(context.Context, string, commands.Command, string) (*commands.Record, error) {
	a.t.Error("an Apple command was sent for an agent")
	return nil, errors.New("no Apple devices here")
}

// auditLog records the entries appended in units of work of their own (the refusals).
type auditLog struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (l *auditLog) Append(_ context.Context, e audit.Entry) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	return int64(len(l.entries)), nil
}

func (l *auditLog) denied(action string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if e.Action == action && e.Outcome == audit.OutcomeDenied {
			n++
		}
	}
	return n
}

type revoker struct{}

func (revoker) Revoke(context.Context, *big.Int, string) error { return nil }

type noPolicies struct{}

func (noPolicies) Effective(*inventory.Device) (*compliance.StoredPolicy, error) { return nil, nil }

type noDecisions struct{}

func (noDecisions) DeviceChanged(context.Context, string, string) {}

// server is one server's security service over the shared store, with its hooks.
type server struct {
	svc       *security.Service
	approvals *hookApprovals
	devices   *hookDevices
}

type cluster struct {
	a, b   *server
	inv    *inventory.Service
	queue  *agentcmd.Queue
	appr   *approvals.Service
	audit  *auditLog
	tokens tokenBook
}

// eachBackend runs test with two servers on one database, on every backend (clustertest).
func eachBackend(t *testing.T, test func(t *testing.T, c *cluster)) {
	clustertest.Each(t, func(t *testing.T, sa, sb storage.Store) { test(t, newCluster(t, sa, sb)) })
}

// newCluster builds two servers, A on sa and B on sb (one database). Group "icu" is under the
// two-person rule.
func newCluster(t *testing.T, sa, sb storage.Store) *cluster {
	t.Helper()
	key, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		inv:   inventory.NewService(storage.Scope(sa, func(tx storage.Tx) inventory.Tx { return tx })),
		queue: agentcmd.New(storage.Scope(sa, func(tx storage.Tx) agentcmd.Tx { return tx })),
		appr:  approvals.New(storage.Scope(sa, func(tx storage.Tx) approvals.Tx { return tx })),
		audit: &auditLog{},
		tokens: tokenBook{
			"tok-req": {ID: "tok-req", Name: "req", Role: tokens.RoleSecurity, Person: "ann", CreatedAt: t0},
			"tok-bob": {ID: "tok-bob", Name: "bob", Role: tokens.RoleSecurity, Person: "bob", CreatedAt: t0},
			"tok-cat": {ID: "tok-cat", Name: "cat", Role: tokens.RoleSecurity, Person: "cat", CreatedAt: t0},
		},
	}
	newServer := func(st storage.Store) *server {
		s := &server{
			approvals: &hookApprovals{Service: approvals.New(storage.Scope(st, func(tx storage.Tx) approvals.Tx { return tx }))},
			devices:   &hookDevices{Service: inventory.NewService(storage.Scope(st, func(tx storage.Tx) inventory.Tx { return tx }))},
		}
		s.svc, err = security.New(security.Deps{
			Store: storage.Scope(st, func(tx storage.Tx) security.Tx { return tx }), Key: key,
			Devices: s.devices, Approvals: s.approvals, Tokens: c.tokens, Apple: noApple{t}, Send: noApple{t},
			Agent: agentcmd.New(storage.Scope(st, func(tx storage.Tx) agentcmd.Tx { return tx })),
			Audit: c.audit, CA: revoker{}, Policies: noPolicies{}, Decisions: noDecisions{},
		}, security.WithTwoPersonRule(func(g string) bool { return g == "icu" }, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c.a, c.b = newServer(sa), newServer(sb)
	return c
}

func (c *cluster) device(t *testing.T, group string) *inventory.Device {
	t.Helper()
	d, err := c.inv.Create(context.Background(), inventory.Device{Platform: inventory.PlatformAgent, OS: "linux", Owner: "nurse", Group: group, Hostname: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (c *cluster) actor(tokenID string) security.Actor {
	tok := c.tokens[tokenID]
	return security.Actor{Audit: audit.Entry{Actor: "token:" + tok.ID, Role: string(tok.Role)}, Token: tok, Name: tok.Name + " (" + tok.ID + ")"}
}

// wipes counts the wipe commands queued for a device.
func (c *cluster) wipes(t *testing.T, deviceID string) int {
	t.Helper()
	cmds, err := c.queue.List(context.Background(), deviceID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, cmd := range cmds {
		if cmd.Type == agentcmd.TypeWipe {
			n++
		}
	}
	return n
}

var wipeReq = api.SecurityRequest{Reason: "stolen from the ward", Mode: "selective"}

func TestTwoServersWipeOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		d := c.device(t, "wards")
		var first api.SecurityAnswer
		var firstErr error
		// B has read the device (no wipe) and found no approval pending; A wipes it meanwhile.
		c.b.approvals.before = func() {
			first, firstErr = c.a.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idempotency.Key{})
		}
		_, err := c.b.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idempotency.Key{})
		if firstErr != nil || first.CommandID == "" {
			t.Fatalf("server A's wipe: %+v, %v", first, firstErr)
		}
		if !errors.Is(err, security.ErrWipePending) {
			t.Fatalf("server B's wipe while A's is on its way: %v, want ErrWipePending", err)
		}
		if n := c.wipes(t, d.ID); n != 1 {
			t.Fatalf("%d wipe commands queued, want 1", n)
		}
		cur, _ := c.inv.Get(ctx, d.ID)
		if !cur.Wipe.Pending() || cur.Wipe.CommandID != first.CommandID {
			t.Fatalf("the device's wipe mark %+v is not A's command %s", cur.Wipe, first.CommandID)
		}
	})
}

func TestTwoServersOneIdempotencyKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		d := c.device(t, "wards")
		idem := idempotency.NewKey("tok-req", "/api/v1/devices/"+d.ID+"/wipe", "k-1")
		var first api.SecurityAnswer
		var firstErr error
		// B's fast path found no answer for the key; A carries the same request out meanwhile.
		c.b.approvals.before = func() {
			first, firstErr = c.a.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idem)
		}
		second, err := c.b.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idem)
		if firstErr != nil || err != nil {
			t.Fatalf("orders: %v, %v", firstErr, err)
		}
		if second.CommandID != first.CommandID || second.CommandID == "" {
			t.Fatalf("the same key answered %+v on A and %+v on B", first, second)
		}
		if n := c.wipes(t, d.ID); n != 1 {
			t.Fatalf("one Idempotency-Key queued %d wipes", n)
		}
	})
}

func TestTwoServersOneApprovalRequest(t *testing.T) {
	eachBackend(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		d := c.device(t, "icu")
		var first api.SecurityAnswer
		var firstErr error
		c.b.approvals.before = func() {
			first, firstErr = c.a.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idempotency.Key{})
		}
		_, err := c.b.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idempotency.Key{})
		if firstErr != nil || first.State != api.StatePendingApproval {
			t.Fatalf("server A's request: %+v, %v", first, firstErr)
		}
		if !errors.Is(err, security.ErrApprovalPending) {
			t.Fatalf("server B's request while A's awaits approval: %v, want ErrApprovalPending", err)
		}
		all, err := c.appr.List(ctx, "")
		if err != nil || len(all) != 1 {
			t.Fatalf("%d approval requests stored (%v), want 1", len(all), err)
		}
		if n := c.wipes(t, d.ID); n != 0 {
			t.Fatalf("a held wipe queued %d commands", n)
		}
	})
}

func TestTwoServersApproveOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, c *cluster) {
		ctx := context.Background()
		d := c.device(t, "icu")
		ans, err := c.a.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idempotency.Key{})
		if err != nil || ans.ApprovalID == "" {
			t.Fatalf("request: %+v, %v", ans, err)
		}
		// Approvers' tokens must predate the request.
		c.tokens["tok-bob"].CreatedAt = t0.Add(-time.Hour)
		c.tokens["tok-cat"].CreatedAt = t0.Add(-time.Hour)
		var second security.Decided
		var secondErr error
		// A has committed its approval and is about to read the device to wipe it; B approves the
		// same request meanwhile: B finds it approved with no command (the "never sent" path) and
		// carries it out.
		c.a.devices.before = func() {
			second, secondErr = c.b.svc.Decide(ctx, c.actor("tok-cat"), ans.ApprovalID, true, "")
		}
		_, err = c.a.svc.Decide(ctx, c.actor("tok-bob"), ans.ApprovalID, true, "")
		if secondErr != nil || second.Command == nil || second.Command.CommandID == "" {
			t.Fatalf("server B's approval: %+v, %v", second, secondErr)
		}
		if !errors.Is(err, security.ErrWipePending) {
			t.Fatalf("server A carrying out an approval B carried out: %v, want ErrWipePending", err)
		}
		if n := c.wipes(t, d.ID); n != 1 {
			t.Fatalf("two approvals at once queued %d wipes", n)
		}
		ap, err := c.appr.Get(ctx, ans.ApprovalID)
		if err != nil || ap.CommandID != second.Command.CommandID {
			t.Fatalf("the approval names command %q (%v), want B's %s", ap.CommandID, err, second.Command.CommandID)
		}
	})
}

func TestTwoServersOrderOnEndedDevice(t *testing.T) {
	ctx := context.Background()
	for _, action := range []security.Action{security.Lock, security.LostMode, security.Wipe} {
		t.Run(string(action), func(t *testing.T) {
			eachBackend(t, func(t *testing.T, c *cluster) {
				d := c.device(t, "wards")
				req := wipeReq
				if action != security.Wipe {
					req.Mode = ""
				}
				// B has read the device as enrolled; A unenrolls it meanwhile.
				c.b.devices.after = func() {
					if _, err := c.a.svc.Unenroll(ctx, c.actor("tok-req"), d); err != nil {
						t.Error(err)
					}
				}
				_, err := c.b.svc.Order(ctx, c.actor("tok-req"), d.ID, action, req, idempotency.Key{})
				if !errors.Is(err, security.ErrInvalidState) {
					t.Fatalf("%s of a device unenrolled meanwhile: %v, want ErrInvalidState", action, err)
				}
				if n := c.audit.denied("device." + string(action)); n != 1 {
					t.Fatalf("%d denials on the record, want 1", n)
				}
				if cmds, _ := c.queue.List(ctx, d.ID); len(cmds) != 0 {
					t.Fatalf("%d commands queued for an unenrolled device", len(cmds))
				}
				if cur, _ := c.inv.Get(ctx, d.ID); cur.State != inventory.StateUnenrolled || cur.Wipe != nil {
					t.Fatalf("the device is %s (wipe %+v) after a refused order", cur.State, cur.Wipe)
				}
			})
		})
	}
}

// TestTwoServersConcurrentWipes orders wipes of one device from many goroutines on both servers
// at once: one is carried out, every other is refused or, with the same Idempotency-Key, gets
// its answer.
func TestTwoServersConcurrentWipes(t *testing.T) {
	const n = 8
	for _, sameKey := range []bool{false, true} {
		name := "distinct orders"
		if sameKey {
			name = "one Idempotency-Key"
		}
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, c *cluster) {
				ctx := context.Background()
				d := c.device(t, "wards")
				answers := make([]api.SecurityAnswer, n)
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					srv := c.a
					if i%2 == 1 {
						srv = c.b
					}
					var idem idempotency.Key
					if sameKey {
						idem = idempotency.NewKey("tok-req", "/api/v1/devices/"+d.ID+"/wipe", "k-1")
					}
					wg.Go(func() {
						answers[i], errs[i] = srv.svc.Order(ctx, c.actor("tok-req"), d.ID, security.Wipe, wipeReq, idem)
					})
				}
				wg.Wait()
				ids := map[string]bool{}
				for i := range n {
					switch {
					case errs[i] == nil:
						ids[answers[i].CommandID] = true
					case sameKey || !errors.Is(errs[i], security.ErrWipePending):
						t.Errorf("order %d: %v", i, errs[i])
					}
				}
				if len(ids) != 1 {
					t.Errorf("the orders answered %d distinct commands, want 1", len(ids))
				}
				if w := c.wipes(t, d.ID); w != 1 {
					t.Errorf("%d wipes queued, want 1", w)
				}
			})
		})
	}
}
