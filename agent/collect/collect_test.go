package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/policies"
)

func constCollector(name string, fn func(ctx context.Context, env *Env) (Partial, error)) Collector {
	return collectorFunc{name: name, fn: fn}
}

func encrypted(env *Env) Partial { return Partial{DiskEncrypted: observe(env, true)} }

// A collector that never returns, even ignoring its context, costs only its own claims, and
// Collect returns at its timeout with the others' claims.
func TestCollectHangingCollector(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hang := constCollector("hang", func(context.Context, *Env) (Partial, error) {
		<-release // ignores ctx on purpose
		return Partial{FirewallEnabled: &policies.Claim[bool]{Value: true}}, nil
	})
	ok := constCollector("ok", func(_ context.Context, env *Env) (Partial, error) { return encrypted(env), nil })
	start := time.Now()
	p, errs := Collect(context.Background(), WithCollectors(hang, ok), WithTimeout(50*time.Millisecond))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Collect took %v with a 50ms timeout", d)
	}
	if len(errs) != 1 || errs[0].Collector != "hang" || !errors.Is(errs[0], ErrTimeout) {
		t.Fatalf("errs = %v", errs)
	}
	if p.FirewallEnabled != nil {
		t.Error("hung collector's claim present")
	}
	if p.DiskEncrypted == nil || !p.DiskEncrypted.Value {
		t.Error("healthy collector's claim lost")
	}
}

// A collector that honours its context is stopped by it.
func TestCollectTimeoutCancelsContext(t *testing.T) {
	stopped := make(chan struct{})
	c := collectorFunc{name: "slow", timeout: 30 * time.Millisecond, fn: func(ctx context.Context, _ *Env) (Partial, error) {
		<-ctx.Done()
		close(stopped)
		return Partial{}, ctx.Err()
	}}
	_, errs := Collect(context.Background(), WithCollectors(c), WithTimeout(time.Hour))
	if len(errs) != 1 {
		t.Fatalf("errs = %v", errs)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the collector's own 30ms timeout did not cancel its context")
	}
}

func TestCollectPanickingCollector(t *testing.T) {
	boom := constCollector("boom", func(_ context.Context, env *Env) (Partial, error) {
		_ = encrypted(env)
		panic("collector bug")
	})
	ok := constCollector("ok", func(_ context.Context, env *Env) (Partial, error) {
		return Partial{FirewallEnabled: observe(env, true)}, nil
	})
	p, errs := Collect(context.Background(), WithCollectors(boom, ok))
	var pe *PanicError
	if len(errs) != 1 || errs[0].Collector != "boom" || !errors.As(errs[0], &pe) || len(pe.Stack) == 0 {
		t.Fatalf("errs = %v", errs)
	}
	if p.DiskEncrypted != nil || p.FirewallEnabled == nil {
		t.Errorf("posture = %+v", p)
	}
}

// Claims a collector did determine survive its error on others; the first collector in the
// list wins a claim two of them set.
func TestCollectPartialAndPrecedence(t *testing.T) {
	first := constCollector("first", func(_ context.Context, env *Env) (Partial, error) {
		return Partial{DiskEncrypted: observe(env, false)}, errors.New("swap unknown")
	})
	second := constCollector("second", func(_ context.Context, env *Env) (Partial, error) {
		return Partial{DiskEncrypted: observe(env, true), SwapEncrypted: observe(env, true)}, nil
	})
	p, errs := Collect(context.Background(), WithCollectors(first, second))
	if len(errs) != 1 || errs[0].Error() != "first: swap unknown" {
		t.Errorf("errs = %v", errs)
	}
	if p.DiskEncrypted == nil || p.DiskEncrypted.Value || p.SwapEncrypted == nil {
		t.Errorf("posture = %+v", p)
	}
	b, err := json.Marshal(errs)
	if err != nil || string(b) != `[{"collector":"first","error":"swap unknown"}]` {
		t.Errorf("errors JSON = %s, %v", b, err)
	}
}

func TestTable(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &policies.Posture{
		Platform:          policies.PlatformLinux,
		ReportedAt:        at,
		OS:                policies.Observe(policies.OSInfo{Distribution: "ubuntu", Version: "24.04", Kernel: "6.8.0"}, policies.ProvenanceAgent, at),
		DiskEncrypted:     policies.Observe(true, policies.ProvenanceAgent, at),
		ScreenLockTimeout: policies.Observe(policies.Duration(5*time.Minute), policies.ProvenanceAgent, at),
		KernelLockdown:    policies.Observe("none\x1b[2J", policies.ProvenanceAgent, at),
	}
	var buf bytes.Buffer
	if err := Table(&buf, p); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{
		"ubuntu 24.04 kernel 6.8.0", "disk encrypted  ", "yes", "5m0s", "2026-01-02T03:04:05Z",
		"swap encrypted", "unknown", "none?[2J",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\x1b") {
		t.Error("control character reached the terminal")
	}
}

// The real machine: whatever it is (a container, a CI runner, a laptop), collection finishes,
// nothing panics or hangs, and what is known is stamped as the agent's.
func TestCollectRealMachine(t *testing.T) {
	p, errs := Collect(context.Background(), WithTimeout(20*time.Second))
	for _, e := range errs {
		var pe *PanicError
		if errors.As(e, &pe) {
			t.Errorf("%s panicked: %v\n%s", e.Collector, pe.Value, pe.Stack)
		}
		if errors.Is(e, ErrTimeout) {
			t.Errorf("%s timed out", e.Collector)
		}
		t.Logf("unknown: %v", e)
	}
	if p.OS != nil && p.OS.Source != policies.ProvenanceAgent {
		t.Errorf("OS source %q", p.OS.Source)
	}
	var buf bytes.Buffer
	if err := Table(&buf, p); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
}
